"""Beyond one machine: feed handlers publish normalized data over NATS; detectors subscribe.

``attach_publisher(engine, url)`` puts an engine's trades, quotes, book states and
book updates (snapshot when a book syncs, then the deltas as applied, numbered per
book) on ``arbwire.<kind>.<venue>.<symbol>``; ``BusDetector(url)`` rebuilds the books
from them with sequence checks and runs the same ``ArbDetector``. ``wire`` holds the
subjects and message types; ``connection`` the NATS client both sides share. See
docs/architecture.md ("Over NATS").
"""

from arbwire.bus.connection import DEFAULT_URL
from arbwire.bus.publisher import BusPublisher, attach_publisher
from arbwire.bus.subscriber import BusDetector, make_detector

__all__ = ["DEFAULT_URL", "BusDetector", "BusPublisher", "attach_publisher", "make_detector"]
