"""Shared test helpers (``tests/`` is on ``sys.path`` under pytest's default import mode)."""
