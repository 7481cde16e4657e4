"""Local venue simulators: a seeded market model plus one protocol server per venue.

They speak each venue's real wire format (WebSocket and REST) on 127.0.0.1 and never
import the client code they test. Start them with ``arbwire.sim.runner.start_simulators``.
"""
