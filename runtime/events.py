"""The event log: one JSON object per line, flushed as written so that a crash loses nothing.

Both worlds (the real processes and the simulator) write this schema, and one summariser
(``runtime.metrics``) reads it. Times are seconds on the writer's clock (``t_*`` fields,
wall-clock epoch in the runtime, simulated seconds in the simulator); durations are ms.

Event kinds and their fields:
- ``round`` (edge): one round, its fields those of ``runtime.rounds.RoundRecord`` (the one
  schema the client, the simulator, the policies and the metrics share).
- ``request`` (edge): session, edge, mode, prompt_tokens, output_tokens, rounds, t_arrival,
  t_first_token, t_done, resumed (sessions re-opened after the target was lost; absent
  when none), error (absent when it succeeded); what the first token's time is made of —
  t_open_sent, open_server_t_recv, open_server_t_send, target_prefill_ms and (dsd)
  draft_prefill_ms, draft_prefill_cpu_ms — absent where no ``opened`` came.
- ``speed`` (every emulated process, after loading and when its work is done): at ("start" or
  "end"), role, ms and the profile point it timed.
- ``batch`` (target): batch_size, tokens, verify_ms, t.
- ``process`` (every process, at exit, also when stopped by a signal): role, pid,
  cpu_user_s, cpu_system_s, peak_rss_mb, threads, torch_threads, affinity, events (how many
  events the process wrote before this one: a reader can tell that none was lost); an
  edge's also requests_started (each has a ``request`` event, ``error`` "interrupted" when
  a signal stopped it).
- ``link`` (the emulator's trace replay): t, link, direction, piece, lateness_ms and the
  applied rate_mbps, delay_ms, jitter_ms, loss_pct, queue_packets.
- ``sample`` (the emulator's resource sampler, once a second): t, cores (busy % per core),
  processes (name -> cpu_percent, rss_mb).
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Collection, Iterator
from pathlib import Path
from typing import IO, Any

import orjson

SCHEMA_VERSION = 1
JSON_OPTIONS = orjson.OPT_APPEND_NEWLINE | orjson.OPT_SERIALIZE_NUMPY


@contextlib.contextmanager
def _held(*signals: signal.Signals) -> Iterator[None]:
    """Block ``signals`` in this thread; one that arrives meanwhile is handled on release."""
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, signals)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


class EventLog:
    """Append-only JSONL writer; thread-safe, flushed after each event.

    ``keep`` also holds the events in memory (for in-process benchmarks and tests), only
    those of ``kinds`` where given (a large simulation's requests, not its rounds);
    ``flush_each=False`` leaves flushing to the buffer, for a writer that can simply be run
    again after a crash (the simulator).
    """

    def __init__(
        self,
        path: str | Path | None,
        process: str,
        keep: bool = False,
        flush_each: bool = True,
        kinds: Collection[str] | None = None,
    ) -> None:
        self.process = process
        self.keep = keep
        self.kinds = None if kinds is None else frozenset(kinds)
        self.flush_each = flush_each
        self.path = Path(path) if path else None
        self._lock = threading.Lock()
        self._file: IO[bytes] | None = None
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = self.path.open("ab")
        self.events: list[dict[str, Any]] = []
        self.written = 0

    def write(self, event: str, **fields: Any) -> dict[str, Any]:
        record = {"event": event, "proc": self.process, "schema": SCHEMA_VERSION, **fields}
        with self._lock, self._signals_held():
            self.written += 1
            if self.keep and (self.kinds is None or event in self.kinds):
                self.events.append(record)
            if self._file is not None:
                self._file.write(orjson.dumps(record, option=JSON_OPTIONS))
                if self.flush_each:
                    self._file.flush()
        return record

    def _signals_held(self) -> contextlib.AbstractContextManager[object]:
        """A crash-safe writer defers SIGINT/SIGTERM while it counts and writes a record:
        the KeyboardInterrupt they raise would otherwise land between the two, and the
        ``process`` record would claim an event the log does not hold."""
        if self._file is None or not self.flush_each:
            return contextlib.nullcontext()
        return _held(signal.SIGINT, signal.SIGTERM)

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None


def read_events(*paths: str | Path) -> list[dict[str, Any]]:
    """Read one or more logs; a torn last line (a crash mid-write) is skipped."""
    events: list[dict[str, Any]] = []
    for path in paths:
        with Path(path).open("rb") as handle:
            for line in handle:
                try:
                    events.append(orjson.loads(line))
                except orjson.JSONDecodeError:
                    continue
    return events
