"""The target server in simulated time, following ``runtime.target.TargetServer``'s loop.

The real server is one loop: it drains its socket (an ``open`` runs its prefill on the spot,
holding the loop), queues ``verify`` requests, and runs a batch when the runtime's
``BatchingPolicy`` says so; messages that arrive meanwhile wait in the socket. Queue time
and the server's receive time are taken when a message is drained, as the runtime takes them.

Where the edges compute on the same machine's other CPUs (an emulated run), a computation
that starts while an edge computes is priced at the profile's interference ratio
(``beside``), and the edges' shared cores are told when the target computes.
"""

from __future__ import annotations

import collections
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from emulator.sim.calibration import PairProfile, interpolate_clamped
from emulator.sim.cpu import CpuQuota
from emulator.sim.engine import Engine
from emulator.sim.messages import Close, Open, Verdict, Verify
from runtime.events import EventLog
from runtime.observations import peer_widths
from runtime.policies import BatchingPolicy
from runtime.utilisation import BUSY_WINDOW_S, BusyMeter

CLOCK_SLACK_MS = 1e-6


@dataclass(slots=True)
class Session:
    """The server's view of one request: how much of its token budget is used."""

    context: int
    remaining: int
    done: bool = False


@dataclass
class TargetSim:
    engine: Engine
    profile: PairProfile
    batching: BatchingPolicy
    cpu: CpuQuota
    speed: float  # compute time relative to the profile's (its probes / the grid's price)
    log: EventLog
    # per verified row width, where the target was probed at several (else ``speed``)
    verify_speeds: dict[int, float] = field(default_factory=dict)
    # a prefill's, where the target was probed at one (else ``speed``)
    prefill_speed: float | None = None
    # per op ("verify", "prefill"): how much slower while an edge computes; empty: no edge
    # computes on this machine
    beside: dict[str, float] = field(default_factory=dict)
    edges_computing: Callable[[], bool] = lambda: False
    # told True when the target starts computing, False when it stops (the edges' cores)
    watchers: list[Callable[[bool], None]] = field(default_factory=list)
    inbox: collections.deque = field(default_factory=collections.deque)
    pending: collections.deque = field(default_factory=collections.deque)
    sessions: dict = field(default_factory=dict)
    active: int = 0
    busy: bool = False
    timer_at: float = math.inf
    busy_ms: float = 0.0
    batches: int = 0
    meter: BusyMeter = field(default_factory=lambda: BusyMeter(BUSY_WINDOW_S * 1000.0))

    def arrive(self, message: Open | Verify | Close) -> None:
        """A message reaches the server host; it is read when the loop is free."""
        self.inbox.append(message)
        if not self.busy:
            self._work()

    def _work(self) -> None:
        """One pass of the server loop from an idle moment: drain, then maybe run a batch."""
        now = self.engine.now
        while self.inbox:
            message = self.inbox.popleft()
            if isinstance(message, Verify):
                message.t_recv = now
                self.pending.append(message)
            elif isinstance(message, Open):
                work = self.profile.target_prefill_ms(message.prompt_tokens)
                work *= self._beside("prefill")
                message.t_recv = now
                message.prefill_ms = self._compute_ms(work, self.prefill_speed)
                self._hold(message.prefill_ms, self._opened, message)
                return
            else:
                self.sessions.pop(message.edge, None)
                message.edge.downlink.send(
                    message.edge.profile.closed_bytes, message.edge.closed, None
                )
        if not self.pending:
            return
        oldest_wait = now - self.pending[0].t_recv
        # A timer set for the oldest request's deadline must find it due: without the slack,
        # rounding can leave it a hair short, and the timer would be set again for now.
        due = oldest_wait + CLOCK_SLACK_MS
        if self.batching.should_dispatch(len(self.pending), self.active, due):
            self._run_batch()
        else:
            wake = now + self.batching.wait_budget_ms(oldest_wait)
            if wake < self.timer_at:
                self.timer_at = wake
                self.engine.at(wake, self._timer)

    def _timer(self, _: None) -> None:
        if self.engine.now >= self.timer_at:
            self.timer_at = math.inf
        if not self.busy:
            self._work()

    def _compute_ms(self, work_ms: float, speed: float | None = None) -> float:
        """How long ``work_ms`` of full-core computation (at ``speed``, default the host's)
        takes from now under the quota."""
        scaled = work_ms * (self.speed if speed is None else speed)
        return self.cpu.finish(self.engine.now, scaled) - self.engine.now

    def _beside(self, op: str) -> float:
        """The interference ratio of ``op`` if an edge computes now, else 1."""
        if self.beside and self.edges_computing():
            return self.beside.get(op, 1.0)
        return 1.0

    def _verify_speed(self, tokens: int) -> float:
        """The probed speed at this row width: interpolated between the probed widths,
        the nearest one's beyond them."""
        if not self.verify_speeds:
            return self.speed
        widths = list(self.verify_speeds)
        return interpolate_clamped(widths, [self.verify_speeds[w] for w in widths], tokens)

    def _hold(self, duration_ms: float, then: Callable[[Any], None], argument: Any) -> None:
        self._set_busy(True)
        self.busy_ms += duration_ms
        self.meter.add(self.engine.now, self.engine.now + duration_ms)
        self.engine.at(self.engine.now + duration_ms, then, argument)

    def _set_busy(self, busy: bool) -> None:
        self.busy = busy
        for watcher in self.watchers:
            watcher(busy)

    def _opened(self, message: Open) -> None:
        self._set_busy(False)
        edge = message.edge
        done = message.max_tokens <= 1
        self.sessions[edge] = Session(message.prompt_tokens + 1, message.max_tokens - 1, done)
        self.active += not done
        message.t_send = self.engine.now
        edge.downlink.send(edge.profile.opened_bytes, edge.opened, message)
        self._work()

    def _run_batch(self) -> None:
        size = min(len(self.pending), self.batching.max_batch)
        batch = [self.pending.popleft() for _ in range(size)]
        tokens = max(item.gamma for item in batch) + 1
        # the cache holds every committed token but the last, which the row feeds again
        context = max(self.sessions[item.edge].context for item in batch) - 1
        work = self.profile.verify_ms(size, tokens, context) * self._beside("verify")
        verify_ms = self._compute_ms(work, self._verify_speed(tokens))
        self.batches += 1
        self._hold(verify_ms, self._batch_done, (batch, tokens, verify_ms, self.engine.now))

    def _batch_done(self, work: tuple[list[Verify], int, float, float]) -> None:
        batch, tokens, verify_ms, dispatched = work
        self._set_busy(False)
        now = self.engine.now
        peers = peer_widths([item.gamma + 1 for item in batch])
        outcomes = [min(item.run, item.gamma) for item in batch]
        batch_accepted = sum(outcomes)
        batch_rejected = sum(a < item.gamma for a, item in zip(outcomes, batch, strict=True))
        utilisation = self.meter.share(now)
        for item, peer, accepted in zip(batch, peers, outcomes, strict=True):
            session = self.sessions[item.edge]
            emitted = min(accepted + 1, session.remaining)
            session.remaining -= emitted
            session.context += emitted
            if session.remaining == 0 and not session.done:
                session.done = True
                self.active -= 1
            verdict = Verdict(
                accepted,
                session.done,
                dispatched - item.t_recv,
                len(batch),
                tokens,
                peer,
                batch_accepted,
                batch_rejected,
                utilisation,
                verify_ms,
                item.t_recv,
                now,
            )
            item.edge.downlink.send(item.edge.profile.verdict_bytes, item.edge.verdict, verdict)
        self.log.write(
            "batch",
            t=now / 1000.0,
            batch_size=len(batch),
            tokens=sum(item.gamma + 1 for item in batch),
            verify_ms=verify_ms,
        )
        self._work()
