"""arbwire: exact local order books and cross-venue arbitrage from live WebSocket feeds."""

__version__ = "0.1.0"
