"""Process figures the monitor reads: resident memory."""

from __future__ import annotations

import os
import resource
import sys


def rss_bytes() -> int:
    """Current resident set size; the peak where the current one cannot be read."""
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak if sys.platform == "darwin" else peak * 1024
