"""Connection costs on loopback: TLS connect, resumption, TCP_NODELAY, make-before-break.

    .venv/bin/python bench/connect.py [--json] [--runs N] [--only connect,switchover,recv]

The same as ``arbwire bench connect``; the code lives in ``arbwire.net.benchmark``.
"""

from __future__ import annotations

import sys

from arbwire.net.benchmark import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
