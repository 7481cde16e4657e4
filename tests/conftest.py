from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

REAL = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "real"


@pytest.fixture(scope="session")
def real_data() -> Path:
    """The real recorded venue traffic (../shared/data/real, laid beside the project)."""
    if not REAL.is_dir():
        pytest.fail(f"real recordings not found at {REAL}; see ../shared/data/README.md")
    return REAL


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    """A client session for talking to the simulators on loopback."""
    async with aiohttp.ClientSession() as session:
        yield session
