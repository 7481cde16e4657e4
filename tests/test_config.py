from __future__ import annotations

import pytest

from arbwire.config import ConfigError, load_config


def test_no_file_gives_binance_and_okx_with_two_symbols():
    config = load_config(None)
    assert set(config.venues) == {"binance", "okx"}
    assert config.venues["binance"].symbols == ["BTC-USDT", "ETH-USDT"]
    assert config.arb.min_net_bps == 10.0


def test_file_overrides_defaults(tmp_path):
    path = tmp_path / "arbwire.toml"
    path.write_text('[venues.binance]\nsymbols = ["SOL-USDT"]\ntaker_fee_bps = 7.5\n[arb]\nmin_net_bps = 4\n')
    config = load_config(path)
    assert config.venues["binance"].symbols == ["SOL-USDT"]
    assert config.venues["binance"].taker_fee_bps == 7.5
    assert "okx" not in config.venues
    assert config.arb.min_net_bps == 4.0


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ('[arb]\nmin_net_bps = "ten"\n', "arb.min_net_bps"),
        ("[arb]\nmin_edge = 3\n", "arb.min_edge: unknown key"),
        ('[venues.binance]\nsymbols = ["BTCUSDT"]\n', "venues.binance.symbols[0]"),
        ('[venues.kraken]\nsymbols = ["BTC-USD"]\n', "venues.kraken"),
        ("[arb]\nmax_notional = -5\n", "arb.max_notional"),
        ("[paper]\nlatency_us = -1\n", "paper.latency_us: must be >= 0"),
        ("[paper]\nkeep_fills = 0\n", "paper.keep_fills"),
        # entries of named tables are named: which venue, which alert rule
        ('[venues.binance]\nsymbols = ["BTC-USDT"]\n[venues.okx]\nsymbols = ["BTC-USDT"]\ntaker_fee_bps = "x"\n',
         "venues.okx.taker_fee_bps: Expected"),
        ('[venues.gateio]\nsymbols = ["BTC-USDT"]\nws = "wss://x"\n', "venues.gateio.ws: unknown key"),
        ("[venues]\nhtx = 5\n", "venues.htx: Expected `object`"),
        ('[monitor.rules.latency_p99]\nthreshold = "high"\n', "monitor.rules.latency_p99.threshold: Expected"),
        ('[venues.bybit]\nsymbols = ["BTC-USDT"]\noptions = { depth = 25 }\n', "venues.bybit.options: bybit orderbook depth"),
        ('[venues.okx]\nsymbols = ["BTC-USDT"]\noptions = { colour = "red" }\n', "venues.okx.options: "),
        ('[venues.binance]\nsymbols = ["BTC-USDT"]\noptions = { encoding = "xml" }\n', "venues.binance.options: encoding"),
        (
            '[venues.binance]\nsymbols = ["BTC-USDT"]\noptions = { encoding = "sbe", api_key_env = "ARBWIRE_TEST_UNSET_KEY" }\n',
            "venues.binance.options: Binance SBE streams need an API key",
        ),
        # numbers a type can't refuse but a running engine would trip on
        ('[venues.binance]\nsymbols = ["BTC-USDT"]\nmax_symbols_per_link = 0\n', "venues.binance.max_symbols_per_link"),
        ('[venues.binance]\nsymbols = ["BTC-USDT"]\nmax_sends_per_s = 0\n', "venues.binance.max_sends_per_s"),
        ("[link]\nbackoff_base_s = 0\n", "link.backoff_base_s: must be > 0 (a zero backoff"),
        ("[link]\ndead_after_s = -1\n", "link.dead_after_s: must be > 0"),
        ("[link]\nbackoff_base_s = 5\nbackoff_cap_s = 2\n", "link.backoff_cap_s: must be >= link.backoff_base_s"),
        ("[link]\nrtt_ping_s = -5\n", "link.rtt_ping_s: must be >= 0 (0: off)"),
        ("[link]\nfailover_after = 0\n", "link.failover_after"),
        ('[venues.binance]\nsymbols = ["BTC-USDT"]\n[link]\nmax_depth = 0\n', "link.max_depth: must be >= 1"),
        ("[link]\nmax_depth = 20\n", "link.max_depth: must be >= 25 with venues.okx: OKX checksums"),
        ("[arb]\nmax_age_ms = 0\n", "arb.max_age_ms: must be > 0"),
    ],
)
def test_errors_name_the_file_and_the_key(tmp_path, text, key):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert message.startswith(f"{path}: {key}"), message


def test_a_shallow_book_is_fine_without_okx(tmp_path):
    path = tmp_path / "shallow.toml"
    path.write_text('[venues.binance]\nsymbols = ["BTC-USDT"]\n[link]\nmax_depth = 10\nrtt_ping_s = 0\n')
    config = load_config(path)
    assert config.link.max_depth == 10 and config.link.rtt_ping_s == 0


def test_broken_toml_and_missing_file_are_clear(tmp_path):
    path = tmp_path / "broken.toml"
    path.write_text("[arb\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(path)
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.toml")


def test_the_readme_example_config_loads(tmp_path):
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    block = readme.split("```toml\n", 1)[1].split("```", 1)[0]
    path = tmp_path / "readme.toml"
    path.write_text(block)
    config = load_config(path)
    assert config.venues["htx"].options == {"book_channel": "depth"}
    assert config.link.make_before_break is True


def test_a_binance_sbe_key_is_read_from_the_environment_never_from_the_file(tmp_path, monkeypatch):
    path = tmp_path / "sbe.toml"
    path.write_text('[venues.binance]\nsymbols = ["BTC-USDT"]\noptions = { encoding = "sbe", api_key_env = "ARBWIRE_SBE_KEY" }\n')
    monkeypatch.setenv("ARBWIRE_SBE_KEY", "ed25519-key")
    config = load_config(path)
    from arbwire.venues.registry import make_session

    session = make_session("binance", ["BTC-USDT"], None, config.venues["binance"].options)
    assert session.headers() == {"X-MBX-APIKEY": "ed25519-key"}
    assert session.url().startswith("wss://stream-sbe.binance.com:9443/stream?streams=btcusdt@depth/")
