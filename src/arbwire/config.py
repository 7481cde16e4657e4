"""Configuration: one TOML file decoded by msgspec into Structs; every key has a default.

``arbwire run`` works with no file at all (BTC-USDT and ETH-USDT on Binance and
OKX). Errors name the file and the key, e.g.
``arbwire.toml: arb.min_net_bps: Expected `float`, got `str```; unknown keys are
rejected so a typo never silently falls back to a default.
"""

from __future__ import annotations

from pathlib import Path

import msgspec

DEFAULT_SYMBOLS = ["BTC-USDT", "ETH-USDT"]


class VenueConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    enabled: bool = True
    backup_ws_urls: list[str] | None = None  # None: the venue's known backups on its public host
    max_symbols_per_link: int | None = None  # None: the venue's documented limit
    max_sends_per_s: float | None = None
    symbols: list[str] = msgspec.field(default_factory=lambda: list(DEFAULT_SYMBOLS))
    ws_url: str | None = None  # None: the venue's public endpoint
    rest_url: str | None = None
    taker_fee_bps: float | None = None  # None: the venue's public base tier
    options: dict[str, str | int | float | bool] = msgspec.field(default_factory=dict)


class ArbConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    min_net_bps: float = 10.0
    max_notional: float = 10_000.0
    max_age_ms: float = 2_000.0
    change_bps: float = 2.0  # a move this large in net edge counts as a material change
    change_size_pct: float = 10.0


class PaperConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Paper trading of every opened opportunity (``arbwire.arb.paper``)."""

    enabled: bool = True
    latency_us: float = 1_000.0  # detection -> both taker orders at the venues; 0: fill as detected
    min_net_bps: float | None = None  # re-walked edge below this at execution: a miss (IOC unfilled)
    keep_fills: int = 1_000  # recent fills kept to show; the ledger's totals are exact regardless


class LinkConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Connection behaviour for every venue (see ``arbwire.net.link.LinkOptions``)."""

    backoff_base_s: float = 1.0
    backoff_cap_s: float = 60.0
    healthy_after_s: float = 30.0
    dead_after_s: float = 15.0
    rtt_ping_s: float = 5.0
    pong_timeout_s: float = 10.0
    connect_timeout_s: float = 10.0
    handshake_timeout_s: float = 10.0
    tls_session_reuse: bool = False
    tls_cafile: str | None = None
    failover_after: int = 3
    make_before_break: bool = True
    warm_standby: bool = False  # a second subscribed link per venue, promoted at once on a drop
    max_depth: int = 5000


class AlertRuleConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """One alert rule (``[monitor.rules.NAME]``). Unset fields take the defaults of the
    rule's metric (``arbwire.monitor.alerts.METRICS``); a rule named like a metric
    (``book_stale``) overrides that built-in rule, ``enabled = false`` removes it."""

    metric: str | None = None  # latency_p99 | throughput | reconnect_rate | book_stale | link_down | rss
    enabled: bool = True
    threshold: float | None = None  # in the metric's unit: ms, frames/s, per minute, s, s, MB
    for_s: float | None = None  # the condition must hold this long before the alert fires
    severity: str | None = None  # info | warning | critical
    action: str | None = None  # none | auto | resync | reconnect | switch_endpoint
    cooldown_s: float | None = None  # at most one automatic action per alert (and venue) this often
    window_s: float | None = None  # latency_p99 and reconnect_rate: the window measured over
    latency: str | None = None  # latency_p99: event_to_recv | rtt | processing
    venues: list[str] | None = None  # only these venues (None: all)


class MonitorConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Metrics and alerts (``arbwire.monitor``); evaluated off the hot path."""

    enabled: bool = True  # evaluate the alert rules (and run their actions)
    actions: bool = True  # run automatic actions; false: alert only
    interval_s: float = 1.0
    metrics_port: int | None = None  # serve Prometheus /metrics here (None: off, 0: any free port)
    metrics_host: str = "127.0.0.1"
    rules: dict[str, AlertRuleConfig] = msgspec.field(default_factory=dict)


class BusConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """NATS bus (``arbwire publish`` / ``arbwire detect``, see ``arbwire.bus``)."""

    url: str = "nats://127.0.0.1:4222"  # several servers: comma-separated
    prefix: str = "arbwire"  # subjects are <prefix>.<kind>.<venue>.<symbol>
    queue: int = 100_000  # publisher's drop-oldest queue, in messages
    snapshot_every_s: float = 5.0  # publisher: a snapshot of every synced book this often (0: off)
    request_snapshots: bool = True  # detector: ask the publisher for a snapshot after a gap
    request_timeout_s: float = 1.0
    reconnect_wait_s: float = 1.0  # between NATS (re)connect attempts, forever
    trades: bool = True  # publisher: publish trades
    quotes: bool = True  # publisher: publish best bid/offer quotes


def _default_venues() -> dict[str, VenueConfig]:
    return {"binance": VenueConfig(), "okx": VenueConfig()}


class RuntimeConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Process-wide settings the engine holds while it runs (arbwire.runtime)."""

    freeze_gc: bool = True  # freeze start-up and connection objects: no 10-20 ms full collections
    busy_poll: bool = False  # never block waiting for frames: lower latency, one core at 100%


class ClockConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Venue clock offsets (arbwire.clock), measured against each venue's REST server time."""

    sync_every_s: float = 60.0  # one round trip per venue this often (0: off, latencies stay raw)
    startup_samples: int = 4  # round trips 0.2 s apart at start, so an estimate is there at once
    window: int = 8  # the estimate is the shortest round trip of the last this many
    correct_latency: bool = True  # add the offset to venue-stamped (event -> receive) latencies


class Config(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    venues: dict[str, VenueConfig] = msgspec.field(default_factory=_default_venues)
    arb: ArbConfig = msgspec.field(default_factory=ArbConfig)
    paper: PaperConfig = msgspec.field(default_factory=PaperConfig)
    link: LinkConfig = msgspec.field(default_factory=LinkConfig)
    bus: BusConfig = msgspec.field(default_factory=BusConfig)
    monitor: MonitorConfig = msgspec.field(default_factory=MonitorConfig)
    runtime: RuntimeConfig = msgspec.field(default_factory=RuntimeConfig)
    clock: ClockConfig = msgspec.field(default_factory=ClockConfig)
    log_level: str = "INFO"
    check_instruments: bool = True  # load instrument lists and drop unlisted symbols
    instrument_cache_dir: str | None = None  # default ~/.cache/arbwire/instruments


class ConfigError(ValueError):
    """A configuration problem, naming the file and the key."""


def load_config(path: str | Path | None = None) -> Config:
    """The config in ``path``, or the built-in default when ``path`` is None."""
    if path is None:
        return Config()
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from exc
    try:
        config = msgspec.toml.decode(raw, type=Config)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"{path}: {_where(exc, raw)}") from exc
    except msgspec.DecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    validate(config, path)
    return config


# tables of named entries: msgspec calls an entry ``[...]``, these find which one it meant
_NAMED_TABLES: tuple[tuple[tuple[str, ...], type], ...] = (
    (("venues",), VenueConfig),
    (("monitor", "rules"), AlertRuleConfig),
)


def _key_and_detail(exc: msgspec.ValidationError, prefix: str = "") -> str:
    """``key: detail`` from msgspec's ``detail - at `$.key` `` wording."""
    detail, _, where = str(exc).rpartition(" - at `")
    if not detail:
        detail, where = where, ""
    key = where.rstrip("`").removeprefix("$").lstrip(".")
    if detail.startswith("Object contains unknown field `"):
        field_name = detail.split("`")[1]
        key = f"{key}.{field_name}" if key else field_name
        detail = "unknown key"
    if prefix:
        key = f"{prefix}.{key}" if key and not key.startswith("[") else f"{prefix}{key}"
    return f"{key or '(top level)'}: {detail}"


def _where(exc: msgspec.ValidationError, raw: bytes) -> str:
    """The failing key, with the name of the venue or rule it sits under."""
    message = _key_and_detail(exc)
    if "[...]" not in message.partition(":")[0]:
        return message
    try:
        doc = msgspec.toml.decode(raw)
    except msgspec.DecodeError:
        return message
    for table_path, entry_type in _NAMED_TABLES:
        table: object = doc
        for part in table_path:
            table = table.get(part) if isinstance(table, dict) else None
        if not isinstance(table, dict):
            continue
        for name, entry in table.items():
            try:
                msgspec.convert(entry, entry_type)
            except msgspec.ValidationError as entry_exc:
                return _key_and_detail(entry_exc, ".".join((*table_path, name)))
    return message


# [link] numbers that must be positive, and why a trader would notice otherwise
_LINK_POSITIVE = {
    "backoff_base_s": "a zero backoff reconnects in a tight loop",
    "dead_after_s": "every link would be declared dead at once",
    "pong_timeout_s": "every ping would time out",
    "connect_timeout_s": "no connection could open",
    "handshake_timeout_s": "no connection could open",
}


def _validate_link(config: Config, path: str | Path) -> None:
    from arbwire.venues.okx import CHECKSUM_DEPTH

    link = config.link
    for key, why in _LINK_POSITIVE.items():
        if getattr(link, key) <= 0:
            raise ConfigError(f"{path}: link.{key}: must be > 0 ({why})")
    if link.backoff_cap_s < link.backoff_base_s:
        raise ConfigError(f"{path}: link.backoff_cap_s: must be >= link.backoff_base_s ({link.backoff_base_s})")
    if link.healthy_after_s < 0 or link.rtt_ping_s < 0:
        key = "healthy_after_s" if link.healthy_after_s < 0 else "rtt_ping_s"
        raise ConfigError(f"{path}: link.{key}: must be >= 0" + (" (0: off)" if key == "rtt_ping_s" else ""))
    if link.failover_after < 1:
        raise ConfigError(f"{path}: link.failover_after: must be >= 1")
    if link.max_depth < 1:
        raise ConfigError(f"{path}: link.max_depth: must be >= 1 (levels kept per book side)")
    okx = [name for name, v in config.venues.items() if v.enabled and name.startswith("okx")]
    if okx and link.max_depth < CHECKSUM_DEPTH:
        raise ConfigError(
            f"{path}: link.max_depth: must be >= {CHECKSUM_DEPTH} with venues.{okx[0]}: OKX checksums the top "
            f"{CHECKSUM_DEPTH} levels of each side, a shallower book would fail every update"
        )


def validate(config: Config, path: str | Path = "<config>") -> None:
    """Checks a type can't express: known venues, symbol form, sane numbers."""
    from arbwire.symbols import SymbolError, split
    from arbwire.venues.registry import VENUES, make_session

    for name, venue in config.venues.items():
        if name not in VENUES:
            raise ConfigError(f"{path}: venues.{name}: unknown venue (known: {', '.join(sorted(VENUES))})")
        for i, symbol in enumerate(venue.symbols):
            try:
                split(symbol)
            except SymbolError as exc:
                raise ConfigError(f"{path}: venues.{name}.symbols[{i}]: {exc}") from None
        try:  # the session refuses options it does not know or can't use, and missing credentials
            make_session(name, venue.symbols, None, venue.options).headers()
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{path}: venues.{name}.options: {exc}") from None
        if venue.max_symbols_per_link is not None and venue.max_symbols_per_link < 1:
            raise ConfigError(f"{path}: venues.{name}.max_symbols_per_link: must be >= 1")
        if venue.max_sends_per_s is not None and venue.max_sends_per_s <= 0:
            raise ConfigError(f"{path}: venues.{name}.max_sends_per_s: must be > 0")
    _validate_link(config, path)
    if config.arb.min_net_bps < 0:
        raise ConfigError(f"{path}: arb.min_net_bps: must be >= 0")
    if config.arb.max_age_ms <= 0:
        raise ConfigError(f"{path}: arb.max_age_ms: must be > 0 (every book would be stale)")
    if config.arb.max_notional <= 0:
        raise ConfigError(f"{path}: arb.max_notional: must be > 0")
    if config.paper.latency_us < 0:
        raise ConfigError(f"{path}: paper.latency_us: must be >= 0 (0: fill at the detected prices)")
    if config.paper.keep_fills < 1:
        raise ConfigError(f"{path}: paper.keep_fills: must be >= 1")
    if config.clock.sync_every_s < 0:
        raise ConfigError(f"{path}: clock.sync_every_s: must be >= 0 (0: off)")
    if config.clock.window < 1:
        raise ConfigError(f"{path}: clock.window: must be >= 1")
    if config.bus.queue <= 0:
        raise ConfigError(f"{path}: bus.queue: must be > 0")
    if config.bus.snapshot_every_s < 0:
        raise ConfigError(f"{path}: bus.snapshot_every_s: must be >= 0 (0: off)")
    if not config.bus.prefix or any(c in config.bus.prefix for c in "*> \t") or ".." in config.bus.prefix:
        raise ConfigError(f"{path}: bus.prefix: not a NATS subject prefix: {config.bus.prefix!r}")
    from arbwire.monitor.alerts import build_rules

    try:
        build_rules(config.monitor.rules)
    except ValueError as exc:
        raise ConfigError(f"{path}: {exc}") from None
