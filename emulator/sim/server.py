"""The target server in simulated time, following ``runtime.target.TargetServer``'s loop.

The real server is one loop: it drains its socket (an ``open`` runs its prefill on the spot,
holding the loop), queues ``verify`` requests, and runs a batch when the runtime's
``BatchingPolicy`` says so; messages that arrive meanwhile wait in the socket. Queue time
and the server's receive time are taken when a message is drained, as the runtime takes them.

Streaming sessions (``cloud``: the target decodes; ``fused``: it drafts too) keep the loop
running: each batch gives them the rows the verifications leave free (the runtime's
``BatchingPolicy.streaming_rows``), a fused one drafting its window first, on the loop.

Where the edges compute on the same machine's other CPUs (an emulated run), a computation
that starts while an edge computes is priced at the profile's interference ratio
(``beside``), and the edges' shared cores are told when the target computes. A target has
a quota of its own (``CpuQuota``), or a quota on a core it shares with other replicas
(``CoreShare``), where its computations progress as the others' let them.
"""

from __future__ import annotations

import collections
import functools
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from emulator.sim.calibration import PairProfile
from emulator.sim.cpu import CoreShare
from emulator.sim.engine import Engine
from emulator.sim.messages import Close, Open, Tokens, Verify
from runtime import protocol
from runtime.cpuquota import CpuQuota
from runtime.events import EventLog
from runtime.interpolation import interpolate_clamped
from runtime.observations import peer_widths
from runtime.policies import BatchingPolicy
from runtime.rounds import Verdict
from runtime.utilisation import BUSY_WINDOW_S, BusyMeter
from runtime.window_advice import WindowAdvisor

CLOCK_SLACK_MS = 1e-6


@dataclass(slots=True)
class Session:
    """The server's view of one request: how much of its token budget is used."""

    context: int
    remaining: int
    done: bool = False
    mode: str = "dsd"
    gamma: int = 0  # a fused session's window
    after_accept: bool = False  # a fused session's last round was accepted whole


@functools.lru_cache(maxsize=4096)
def tokens_bytes(session: str, emitted: int) -> int:
    """The encoded size of a ``tokens`` reply carrying ``emitted`` tokens."""
    message = protocol.tokens_message(session, [1] * emitted, False, 4, 3, 8, 180.2, 1.7e9)
    return len(protocol.encode(message))


@dataclass
class Stream:
    """One streaming session's row in a batch: the window it drafted and how much of it
    the target accepts (a cloud session's: none)."""

    edge: Any
    session: Session
    gamma: int
    run: int
    draft_ms: float = 0.0


@dataclass
class TargetSim:
    engine: Engine
    profile: PairProfile
    batching: BatchingPolicy
    cpu: CpuQuota | CoreShare
    speed: float  # compute time relative to the profile's (its probes / the grid's price)
    log: EventLog
    # per batch size and row width, where the target was probed at several (else ``speed``)
    verify_speeds: dict[int, dict[int, float]] = field(default_factory=dict)
    # a prefill's, where the target was probed at one (else ``speed``)
    prefill_speed: float | None = None
    # a batch's time when its rows' caches differ in length (left-padded) over equal rows'
    unequal_rows: float = 1.0
    # the draft model a fused session drafts with, in the cloud, and its speed there
    draft_profile: PairProfile | None = None
    draft_speed: float = 1.0
    # per op ("verify", "prefill"): how much slower while an edge computes; empty: no edge
    # computes on this machine
    beside: dict[str, float] = field(default_factory=dict)
    edges_computing: Callable[[], bool] = lambda: False
    # told True when the target starts computing, False when it stops (the edges' cores)
    watchers: list[Callable[[bool], None]] = field(default_factory=list)
    inbox: collections.deque = field(default_factory=collections.deque)
    pending: collections.deque = field(default_factory=collections.deque)
    sessions: dict = field(default_factory=dict)
    streams: dict = field(default_factory=dict)  # the streaming sessions among them, as opened
    active: int = 0
    busy: bool = False
    timer_at: float = math.inf
    busy_ms: float = 0.0
    batches: int = 0
    meter: BusyMeter = field(default_factory=lambda: BusyMeter(BUSY_WINDOW_S * 1000.0))
    advisor: WindowAdvisor = field(init=False)

    def __post_init__(self) -> None:
        self.advisor = WindowAdvisor(self.batching.max_batch)

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
                if message.draft_ms is not None:
                    self.advisor.request(message.edge, now, message.gamma, message.draft_ms)
                self.pending.append(message)
            elif isinstance(message, Open):
                work = self.profile.target_prefill_ms(message.prompt_tokens)
                works = [work * self._beside("prefill") * self._speed(self.prefill_speed)]
                message.t_recv = now
                if message.mode == "fused":
                    drafting = self._fused_draft().draft_prefill_ms(message.prompt_tokens)
                    works.append(drafting * self.draft_speed)
                self._compute(works, functools.partial(self._opened, message))
                return
            else:
                self.sessions.pop(message.edge, None)
                self.streams.pop(message.edge, None)
                self.advisor.close(message.edge)
                message.edge.downlink.send(
                    message.edge.profile.closed_bytes, message.edge.closed, None
                )
        streaming = self._streaming()
        if not self.pending and not streaming:
            return
        oldest_wait = now - self.pending[0].t_recv if self.pending else 0.0
        # A timer set for the oldest request's deadline must find it due: without the slack,
        # rounding can leave it a hair short, and the timer would be set again for now.
        due = oldest_wait + CLOCK_SLACK_MS
        if self.batching.should_dispatch(len(self.pending), self.active, due, len(streaming)):
            self._run_batch(streaming)
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

    def _speed(self, speed: float | None) -> float:
        """A computation's time relative to the profile's: ``speed``, default the host's."""
        return self.speed if speed is None else speed

    def _streaming(self) -> list[tuple[Any, Session]]:
        """The streaming sessions still decoding, the longest open first (as the real
        server's session table keeps them); kept apart from the DSD sessions, so that a
        pass of the loop does not walk every session."""
        for edge in [e for e, s in self.streams.items() if s.done]:
            del self.streams[edge]
        return list(self.streams.items())

    def _fused_draft(self) -> PairProfile:
        if self.draft_profile is None:
            raise ValueError("a fused session needs the cloud's draft model's profile")
        return self.draft_profile

    def _beside(self, op: str) -> float:
        """The interference ratio of ``op`` if an edge computes now, else 1."""
        if self.beside and self.edges_computing():
            return self.beside.get(op, 1.0)
        return 1.0

    def _verify_speed(self, batch: int, tokens: int) -> float:
        """The probed speed at this shape: interpolated between the probed widths at each
        probed batch size, then between those sizes; the nearest one's beyond them."""
        if not self.verify_speeds:
            return self.speed
        sizes = sorted(self.verify_speeds)
        at_width = [
            interpolate_clamped(list(by_width), list(by_width.values()), tokens)
            for by_width in (self.verify_speeds[size] for size in sizes)
        ]
        return interpolate_clamped(sizes, at_width, batch)

    def _compute(
        self, works_ms: list[float], then: Callable[[list[float]], None], metered: int = 0
    ) -> None:
        """Hold the loop for computations of ``works_ms`` (full-core times) one after
        another on the host's CPU, then ``then(the moment each ended)``. The busy meter
        counts from the start of computation ``metered``: the real server meters its
        forward passes, not a fused draft."""
        began = self.engine.now
        self._set_busy(True)

        def finished(ends: list[float]) -> None:
            starts = [began, *ends[:-1]]
            self.busy_ms += ends[-1] - began
            self.meter.add(starts[metered], ends[-1])
            self._set_busy(False)
            then(ends)

        if isinstance(self.cpu, CpuQuota):
            ends, at = [], began
            for work in works_ms:
                at = self.cpu.finish(at, work)
                ends.append(at)
            self.engine.at(at, finished, ends)
            return
        # on a shared core a computation's end depends on the others': one at a time
        share, done = self.cpu, []

        def step(_: Any) -> None:
            done.append(self.engine.now)
            if len(done) == len(works_ms):
                finished(done)
            else:
                share.compute(works_ms[len(done)], step)

        share.compute(works_ms[0], step)

    def _set_busy(self, busy: bool) -> None:
        self.busy = busy
        for watcher in self.watchers:
            watcher(busy)

    def _opened(self, message: Open, ends: list[float]) -> None:
        message.prefill_ms = ends[-1] - message.t_recv
        edge = message.edge
        done = message.max_tokens <= 1
        self.sessions[edge] = session = Session(
            message.prompt_tokens + 1, message.max_tokens - 1, done, message.mode, message.gamma
        )
        if message.mode != "dsd" and not done:
            self.streams[edge] = session
        self.active += not done and message.mode == "dsd"
        message.t_send = self.engine.now
        edge.downlink.send(edge.profile.opened_bytes, edge.opened, message)
        self._work()

    def _run_batch(self, streaming: list[tuple[Any, Session]]) -> None:
        size = min(len(self.pending), self.batching.max_batch)
        batch = [self.pending.popleft() for _ in range(size)]
        streams, drafting, works = [], [], []
        for edge, session in streaming[: self.batching.streaming_rows(size, len(streaming))]:
            stream = Stream(edge, session, 0, 0)
            if session.mode == "fused":
                stream.gamma = gamma = max(0, min(session.gamma, session.remaining - 1))
                stream.run = edge.cloud_acceptance_run(gamma, session.after_accept)
                work = self._fused_draft().draft_ms(gamma, session.context, session.after_accept)
                drafting.append(stream)
                works.append(work * self.draft_speed)
            streams.append(stream)
        widths = [item.gamma + 1 for item in batch] + [stream.gamma + 1 for stream in streams]
        tokens = max(widths)
        # the cache holds every committed token but the last, which the row feeds again
        contexts = [self.sessions[item.edge].context for item in batch]
        contexts += [stream.session.context for stream in streams]
        work = self.profile.verify_ms(len(widths), tokens, max(contexts) - 1)
        work *= self._beside("verify") * (self.unequal_rows if len(set(contexts)) > 1 else 1.0)
        works.append(work * self._speed(self._verify_speed(len(widths), tokens)))
        self.batches += 1
        self._compute(
            works,
            functools.partial(self._batch_done, batch, streams, drafting, widths, self.engine.now),
            metered=len(drafting),
        )

    def _batch_done(
        self,
        batch: list[Verify],
        streams: list[Stream],
        drafting: list[Stream],
        widths: list[int],
        began: float,
        ends: list[float],
    ) -> None:
        starts = [began, *ends[:-1]]
        for stream, start, end in zip(drafting, starts, ends, strict=False):
            stream.draft_ms = end - start
        dispatched = starts[-1]
        verify_ms = ends[-1] - dispatched
        now = self.engine.now
        peers = peer_widths(widths)
        outcomes = [min(item.run, item.gamma) for item in batch]
        outcomes += [min(stream.run, stream.gamma) for stream in streams]
        drafted = [item.gamma for item in batch] + [stream.gamma for stream in streams]
        batch_accepted = sum(outcomes)
        batch_rejected = sum(a < d for a, d in zip(outcomes, drafted, strict=True))
        utilisation = self.meter.share(now)
        self.advisor.batch(
            widths,
            drafted,
            outcomes,
            verify_ms,
            [dispatched - item.t_recv for item in batch if item.draft_ms is not None],
            self.active,
        )
        for item, peer, accepted in zip(
            batch, peers[: len(batch)], outcomes[: len(batch)], strict=True
        ):
            session = self.sessions[item.edge]
            self._emit(session, accepted)
            hint = 0
            if item.draft_ms is not None:
                hint = self.advisor.verdict(item.edge, now, session.done)
            verdict = Verdict(
                session=item.edge.active.session,
                round=item.edge.active.rounds,
                accepted=accepted,
                token=0,
                done=session.done,
                queue_ms=dispatched - item.t_recv,
                batch_size=len(widths),
                verify_ms=verify_ms,
                t_recv=item.t_recv / 1000.0,
                t_send=now / 1000.0,
                batch_width=max(widths),
                peer_width=peer,
                batch_accepted=batch_accepted,
                batch_rejected=batch_rejected,
                utilisation=utilisation,
                gamma_hint=hint or None,
            )
            size = item.edge.profile.verdict_bytes + (protocol.ADVICE_REPLY_BYTES if hint else 0)
            item.edge.downlink.send(size, item.edge.verdict, verdict)
        for stream, accepted in zip(streams, outcomes[len(batch) :], strict=True):
            session, edge = stream.session, stream.edge
            emitted = self._emit(session, accepted)
            session.after_accept = stream.gamma > 0 and accepted == stream.gamma
            reply = Tokens(
                emitted,
                session.done,
                stream.gamma,
                accepted,
                len(widths),
                verify_ms + stream.draft_ms,
                now,
                tokens_bytes(f"{edge.name}-12345-0", emitted),
            )
            edge.downlink.send(reply.bytes, edge.tokens, reply)
        self.log.write(
            "batch",
            t=now / 1000.0,
            batch_size=len(widths),
            tokens=sum(widths),
            verify_ms=verify_ms,
        )
        self._work()

    def _emit(self, session: Session, accepted: int) -> int:
        """Commit a row's accepted tokens and the target's own; returns how many."""
        emitted = min(accepted + 1, session.remaining)
        session.remaining -= emitted
        session.context += emitted
        if session.remaining == 0 and not session.done:
            session.done = True
            self.active -= session.mode == "dsd"
        return emitted
