"""What the network layer must respect per venue (../shared/docs/exchange-protocols.md):
message rates, streams per connection, connection lifetime, backup endpoints, and
which ``Reconnect`` reasons announce a planned disconnect.

Values here are defaults; ``LinkOptions`` overrides each of them.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class VenueLimits:
    #: client messages per second per connection (text frames we send; pings and pongs
    #: count at Binance too, so the default leaves room for them)
    max_sends_per_s: float | None = None
    #: streams (symbol x channel) per connection; symbols are sharded across connections
    max_streams_per_link: int | None = None
    #: the venue cuts connections at this age: switch (make-before-break) a little earlier
    max_link_age_s: float | None = None
    #: the public WebSocket base URL and its alternatives, tried in order after failures
    ws_urls: tuple[str, ...] = ()


LIMITS: dict[str, VenueLimits] = {
    # §1.3: 5 incoming msgs/s (ping/pong included), 1024 streams, 24 h lifetime
    "binance": VenueLimits(
        max_sends_per_s=4.0,
        max_streams_per_link=1024,
        max_link_age_s=23.5 * 3600,
        ws_urls=(
            "wss://stream.binance.com:9443",
            "wss://stream.binance.com:443",
            "wss://data-stream.binance.vision",
        ),
    ),
    "binance-usdm": VenueLimits(max_sends_per_s=4.0, max_streams_per_link=1024, max_link_age_s=23.5 * 3600),
    # §3.3: 480 subscribe/unsubscribe per hour per connection, 3 new connections/s per IP
    "okx": VenueLimits(max_sends_per_s=5.0),
    "bybit": VenueLimits(max_sends_per_s=5.0),
    "gateio": VenueLimits(),
    # §5.4: one req per 100 ms; api-aws is the AWS-optimised twin
    "htx": VenueLimits(
        max_sends_per_s=10.0,
        ws_urls=("wss://api.huobi.pro", "wss://api-aws.huobi.pro"),
    ),
}

#: substrings of ``Reconnect.reason`` that announce a disconnect the venue planned:
#: the link is replaced make-before-break instead of dropped
PLANNED_REASONS = (
    "serverShutdown",  # Binance §1.3
    "64008",  # OKX service-upgrade notice §3.2
    "connection upgrade",  # Gate event:"upgrade" §4.4
    "link age",  # our own switch ahead of a venue's lifetime cut
    "subscribe budget",  # OKX §3.3: the connection spent its 480 requests an hour
)


def limits_for(venue: str) -> VenueLimits:
    return LIMITS.get(venue, VenueLimits())


def is_planned(reason: str) -> bool:
    return any(marker in reason for marker in PLANNED_REASONS)


def backup_urls(venue: str, ws_url: str) -> tuple[str, ...]:
    """The endpoints to rotate through, ``ws_url`` first. A venue's known backups apply
    only when the link uses one of its public endpoints (never to a simulator)."""
    known = limits_for(venue).ws_urls
    if ws_url.rstrip("/") in known:
        return (ws_url,) + tuple(u for u in known if u != ws_url.rstrip("/"))
    return (ws_url,)
