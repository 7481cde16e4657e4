"""The arbwire command as a user runs it: a real process, real output."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys


def _arbwire(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "arbwire.cli", *args], capture_output=True, text=True, timeout=timeout
    )


def test_demo_json_summary_shows_synced_books_and_opportunities():
    proc = _arbwire("demo", "--duration", "4", "--json", "--seed", "7")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert set(summary["venues"]) == {"binance", "okx", "bybit", "gateio", "htx"}
    for venue, v in summary["venues"].items():
        assert v["frames"] > 20, venue
        assert all(b["state"] == "SYNCED" for b in v["books"].values()), (venue, v["books"])
        assert v["latency"]["event_to_recv_us"]["count"] > 0
        assert v["latency"]["processing_us"]["p99"] > 0
    assert summary["opportunities"]["opened"] >= 1
    assert summary["opportunity_events"][0]["event"] == "opened"
    paper = summary["paper"]  # every opened opportunity taken on paper, 1 ms after detection
    assert paper["latency_us"] == 1000 and paper["trades"] + paper["missed"] + paper["pending"] == summary["opportunities"]["opened"]


def test_run_with_a_bad_config_names_the_file_and_key(tmp_path):
    bad = tmp_path / "arbwire.toml"
    bad.write_text("[arb]\nmin_net_bps = 'lots'\n")
    proc = _arbwire("run", "--config", str(bad), timeout=30)
    assert proc.returncode == 2
    assert f"{bad}: arb.min_net_bps" in proc.stderr


def test_ctrl_c_ends_the_demo_with_its_summary():
    import signal
    import time

    proc = subprocess.Popen(
        [sys.executable, "-m", "arbwire.cli", "demo", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(3)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    summary = json.loads(out)
    assert summary["duration_s"] >= 1.0  # ran until the signal, not just through start-up
    assert all(v["frames"] > 0 for v in summary["venues"].values())


def _sim_config(tmp_path, venues: str = "binance,okx"):
    """``arbwire sim`` in its own process, and a config file pointing ``arbwire run`` at it."""
    sim = subprocess.Popen(
        [sys.executable, "-m", "arbwire.cli", "sim", "--venues", venues, "--duration", "60",
         "--episode-first", "0.5", "--episode-every", "0.7", "--episode-pairs", "cycle"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    lines = []
    assert sim.stdout is not None
    for line in sim.stdout:
        event = json.loads(line)
        if event["event"] == "ready":
            break
        if event["event"] == "endpoint":
            lines.append(
                f'[venues.{event["venue"]}]\nsymbols = ["BTC-USDT", "ETH-USDT"]\n'
                f'ws_url = "{event["ws_url"]}"\nrest_url = "{event["rest_url"]}"\n'
            )
    config = tmp_path / "arbwire.toml"
    config.write_text(f'instrument_cache_dir = "{tmp_path / "cache"}"\n\n' + "\n".join(lines))
    return sim, config


def test_run_ends_with_the_summary_and_prints_each_opportunity_when_piped(tmp_path):
    sim, config = _sim_config(tmp_path)
    try:
        proc = _arbwire("run", "--config", str(config), "--duration", "4", timeout=60)
        assert proc.returncode == 0, proc.stderr
        assert "summary after" in proc.stdout and "last opportunity events" in proc.stdout
        opened = [line for line in proc.stdout.splitlines() if line.startswith("opened ")]
        assert opened and " buy " in opened[0] and "net " in opened[0]
        fills = [line for line in proc.stdout.splitlines() if line.startswith("paper ")]
        assert fills and " pnl " in fills[0] and " after " in fills[0]  # each paper trade, a line
        assert "book SYNCED" in proc.stderr  # logs stay on stderr
        proc = _arbwire("run", "--config", str(config), "--duration", "3", "--json", timeout=60)
        assert proc.returncode == 0, proc.stderr
        summary = json.loads(proc.stdout)  # stdout holds the summary alone
        assert set(summary["venues"]) == {"binance", "okx"}
        assert all(b["state"] == "SYNCED" for v in summary["venues"].values() for b in v["books"].values())
        assert summary["duration_s"] >= 3 and "monitor" in summary
    finally:
        sim.terminate()
        sim.wait(timeout=10)


def _on_terminal(argv: list[str], interrupt_after_s: float | None = None) -> tuple[int, str]:
    """Run ``arbwire ARGV`` on a real pseudo-terminal (its own session, so Ctrl-C reaches
    its whole process group as a terminal's would); its exit code and everything it drew."""
    import os
    import pty
    import select
    import signal
    import time

    controller, terminal = pty.openpty()
    try:
        env = {**os.environ, "COLUMNS": "200", "LINES": "60", "TERM": "xterm-256color"}
        env.pop("NO_COLOR", None)
        proc = subprocess.Popen(
            [sys.executable, "-m", "arbwire.cli", *argv],
            stdin=terminal, stdout=terminal, stderr=terminal, env=env, close_fds=True, start_new_session=True,
        )
        os.close(terminal)
        chunks = []
        started = time.monotonic()
        interrupted = False
        while time.monotonic() < started + 60:
            if interrupt_after_s is not None and not interrupted and time.monotonic() > started + interrupt_after_s:
                os.killpg(proc.pid, signal.SIGINT)
                interrupted = True
            ready, _, _ = select.select([controller], [], [], 0.5)
            if ready:
                try:
                    data = os.read(controller, 65536)
                except OSError:  # the child closed the terminal
                    break
                if not data:
                    break
                chunks.append(data)
            elif proc.poll() is not None:
                break
        return proc.wait(timeout=30), b"".join(chunks).decode("utf-8", "replace")
    finally:
        with contextlib.suppress(OSError):
            os.close(controller)


def test_run_on_a_terminal_shows_the_live_board_with_the_logs_above_it(tmp_path):
    """A real pseudo-terminal: rich sees a terminal, the board is drawn and logs print above it."""
    sim, config = _sim_config(tmp_path)
    try:
        code, screen = _on_terminal(["run", "--config", str(config), "--duration", "4"])
        assert code == 0
        assert screen.count("arbwire ") >= 3  # the board's head line, redrawn as the run goes
        assert "opportunities (latest)" in screen and "summary after" in screen
        assert "book SYNCED" in screen  # log lines go through the console, above the board
        assert "\x1b[" in screen  # drawn with terminal control sequences, not as plain lines
        assert "\nopened " not in screen  # no bare opportunity lines: the board shows them
    finally:
        sim.terminate()
        sim.wait(timeout=10)


def test_ctrl_c_on_a_terminal_ends_the_run_with_its_summary(tmp_path):
    """Ctrl-C reaches the engine and the board's process alike: the board stops, the summary
    prints, nothing dies with a traceback."""
    sim, config = _sim_config(tmp_path)
    try:
        code, screen = _on_terminal(["run", "--config", str(config)], interrupt_after_s=4)
        assert code == 0
        assert "opportunities (latest)" in screen  # the board was up
        assert "summary after" in screen and "paper (1000 µs)" in screen
        assert "Traceback" not in screen and "KeyboardInterrupt" not in screen
    finally:
        sim.terminate()
        sim.wait(timeout=10)


def test_the_board_queue_drops_updates_rather_than_block_the_loop():
    import time

    from arbwire.board import BoardProcess

    screen = BoardProcess(max_pending=2)  # no child draining it
    t0 = time.perf_counter()
    for i in range(5):
        screen.show({"i": i}, [], 0.0, None, "")
    assert time.perf_counter() - t0 < 0.5  # never waited for room
    assert screen.dropped == 3
    screen.stop()  # never started: nothing to stop, no hang


def test_logs_still_go_out_when_the_board_process_is_gone(capsys):
    import logging

    from arbwire.board import BoardLogHandler, BoardProcess

    screen = BoardProcess()  # never started: as if its process had ended
    assert not screen.alive
    handler = BoardLogHandler(screen)
    handler.handle(logging.LogRecord("arbwire.net", logging.WARNING, __file__, 1, "link %s down", ("okx",), None))
    assert "WARNING arbwire.net link okx down" in capsys.readouterr().err
