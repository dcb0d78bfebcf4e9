"""What a running emulation shows: per edge, requests done, tokens/s, the current γ and round
trip, and what its link's trace says right now. A live table on a terminal; otherwise one
line when an edge finishes and a status line every 30 s (quiet in logs and CI)."""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path
from typing import Any

import orjson
from rich.console import Console
from rich.live import Live
from rich.table import Table

from emulator.scenario import Scenario
from runtime.rounds import RoundRecord

STATUS_EVERY_S = 30.0


class LogFollower:
    """Reads the lines appended to a JSONL log since the last call."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0

    def new_events(self) -> list[dict[str, Any]]:
        try:
            with self.path.open("rb") as handle:
                handle.seek(self.offset)
                data = handle.read()
        except OSError:
            return []
        complete = data[: data.rfind(b"\n") + 1]
        self.offset += len(complete)
        events = []
        for line in complete.splitlines():
            try:
                events.append(orjson.loads(line))
            except orjson.JSONDecodeError:
                continue
        return events


class EdgeState:
    def __init__(self, name: str, requests: int, log: Path, link: Any) -> None:
        self.name = name
        self.total = requests
        self.follower = LogFollower(log)
        self.link = link
        self.done = self.failed = self.tokens = 0
        self.gamma: int | None = None
        self.round_trip_ms: float | None = None
        self.reported = False

    def update(self) -> None:
        for event in self.follower.new_events():
            if event["event"] == "round":
                record = RoundRecord.of_event(event)
                self.tokens += record.emitted
                self.gamma = record.gamma
                if record.t_send is not None:
                    self.round_trip_ms = (record.t_recv - record.t_send) * 1000.0
            elif event["event"] == "request":
                self.done += 1
                self.failed += bool(event.get("error"))
                self.tokens += 1  # the first token comes with the prefill, not in a round

    def link_now(self, elapsed: float) -> tuple[float | None, float | None]:
        """(RTT ms, downlink Mbit/s) the trace gives now (None: unspecified)."""
        trace = self.link.trace
        at = elapsed % trace.duration_s
        up, down = trace.at(at, "up"), trace.at(at, "down")
        rtt = up.delay_ms + down.delay_ms
        return (None if math.isnan(rtt) else rtt), (
            None if math.isnan(down.rate_mbps) else down.rate_mbps
        )


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


class Progress:
    """Call with (t_start, final) about once a second during the workload."""

    def __init__(self, scenario: Scenario, out: Path, interactive: bool | None = None) -> None:
        self.edges = [
            EdgeState(host, scenario.workload.requests_per_edge, out / f"{host}.jsonl", g.link)
            for host, g in scenario.edge_hosts()
        ]
        self.interactive = sys.stdout.isatty() if interactive is None else interactive
        self.live: Live | None = None
        self.last_status = time.monotonic()

    def __call__(self, t_start: float, final: bool) -> None:
        elapsed = time.time() - t_start
        for edge in self.edges:
            edge.update()
        if self.interactive:
            if self.live is None:
                self.live = Live(self._table(elapsed), console=Console(), auto_refresh=False)
                self.live.start()
            self.live.update(self._table(elapsed), refresh=True)
            if final:
                self.live.stop()
            return
        for edge in self.edges:
            if edge.done >= edge.total and not edge.reported:
                edge.reported = True
                print(f"  {edge.name}: {edge.done} requests done at {elapsed:.0f} s", flush=True)
        if not final and time.monotonic() - self.last_status > STATUS_EVERY_S:
            self.last_status = time.monotonic()
            done = sum(e.done for e in self.edges)
            total = sum(e.total for e in self.edges)
            tokens = sum(e.tokens for e in self.edges)
            print(
                f"  {elapsed:.0f} s: {done}/{total} requests, {tokens / elapsed:.1f} tok/s",
                flush=True,
            )

    def _table(self, elapsed: float) -> Table:
        table = Table(title=f"DSD-Emu: {elapsed:.0f} s into the workload")
        for column in ("edge", "requests", "tokens", "tok/s", "γ", "round trip ms"):
            table.add_column(column, justify="right")
        table.add_column("link now: RTT ms / down Mbit/s", justify="right")
        for edge in self.edges:
            rtt, rate = edge.link_now(elapsed)
            table.add_row(
                edge.name,
                f"{edge.done}/{edge.total}" + (f" ({edge.failed} failed)" if edge.failed else ""),
                str(edge.tokens),
                _fmt(edge.tokens / elapsed if elapsed > 0 else None, ".1f"),
                _fmt(edge.gamma, "d"),
                _fmt(edge.round_trip_ms, ".0f"),
                f"{_fmt(rtt, '.0f')} / {_fmt(rate, '.1f')}",
            )
        return table
