"""An edge device in simulated time, following ``runtime.draft.EdgeClient``'s DSD loop.

Per request: send ``open`` and prefill the draft meanwhile; the first token is the target's
(from its prefill). Then rounds: ask the window policy for γ (capped so a round never
drafts past the token budget), draft γ tokens, send them, and on the verdict emit
accepted + 1 tokens; the request ends when its budget is reached. The policy is the
runtime's own object, fed through ``observation_from_round`` exactly as the client feeds it.

The other modes follow the client too: ``cloud`` and ``fused`` send ``open`` and log each
``tokens`` reply as a round (the server decodes, or drafts and verifies, in the cloud);
``edge-only`` decodes with the draft alone, one step per token, and sends nothing.
"""

from __future__ import annotations

import collections
import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from emulator.sim.calibration import PairProfile, sample_run
from emulator.sim.cpu import CoreShare
from emulator.sim.engine import Engine
from emulator.sim.links import SimPath
from emulator.sim.messages import Close, Open, Tokens, Verify
from runtime import protocol
from runtime.cpuquota import CpuQuota
from runtime.events import EventLog
from runtime.observations import observation_from_round
from runtime.policies import WindowPolicy
from runtime.rounds import DraftedRound, RoundRecord, Verdict

if TYPE_CHECKING:
    from emulator.sim.cloud import RoutedCloud
    from emulator.sim.server import TargetSim

RUN_HORIZON = 32  # acceptance runs are drawn this far whatever γ is (further only if γ is)


@dataclass(frozen=True)
class PromptModel:
    """What the simulator knows of one prompt: its length in tokens, the per-position
    acceptance to draw from, and the profile's recorded greedy matches (may be empty): of
    the draft fed one token at a time, and of a round's first draft token after a fully
    accepted round, when two tokens are fed in one forward."""

    tokens: int
    acceptance: list[float]
    matches: list[bool]
    matches_after_accept: list[bool] = field(default_factory=list)


@dataclass
class Request:
    index: int
    session: str
    prompt_tokens: int
    acceptance: list[float]
    matches: list[bool]
    matches_after_accept: list[bool]
    t_arrival: float
    max_tokens: int  # its token budget
    output_tokens: int = 0
    rounds: int = 0
    t_first_token: float | None = None
    t_done: float | None = None
    first_token: dict[str, float] = field(default_factory=dict)  # as the runtime logs it


@dataclass(eq=False)
class EdgeSim:
    """One edge host: its draft model's timing, its window policy and its access path."""

    name: str
    engine: Engine
    profile: PairProfile
    policy: WindowPolicy
    cpu: CpuQuota | CoreShare
    speed: float  # compute time relative to the profile's (its probes / the grid's price)
    uplink: SimPath
    downlink: SimPath
    server: TargetSim | RoutedCloud
    log: EventLog
    accept_rng: random.Random
    prompts: list[PromptModel]
    max_tokens: int
    requests: int
    closed_loop: bool
    mode: str = "dsd"
    # per op ("step", "prefill"): how much slower while the target computes on this
    # machine's other CPU (an emulated run's); empty: the edge is a device of its own
    beside: dict[str, float] = field(default_factory=dict)
    # per request index, where the workload draws them: its answer's token budget, its
    # prompt's length, and (closed loop) the think time before the next request
    answer_tokens: list[int] = field(default_factory=list)
    prompt_lengths: list[int] = field(default_factory=list)
    think_ms: list[float] = field(default_factory=list)
    # DSD-Sim's semantics, for comparison: a request ends after ceil(budget / γ) rounds,
    # whatever was accepted, credited with its whole budget
    fixed_rounds_gamma: int | None = None
    waiting: collections.deque[Request] = field(default_factory=collections.deque)
    current: Request | None = None
    finished: int = 0
    rounds: int = 0
    _context: int = 0
    _prefill_done: float = 0.0
    _computing_until: float = 0.0  # on a quota of its own: when its computation ends
    _opened_early: Open | None = None  # ``opened`` came before the draft's prefill was done
    _all_accepted: bool = False  # the last round's drafts were all accepted: two tokens to feed
    _gamma: int = 0
    _run: int = 0
    _t_draft: float = 0.0
    _draft_ms: float = 0.0
    _draft_cpu_ms: float = 0.0
    _t_send: float = 0.0
    _bytes_up: int = 0
    foresee: Callable[[int], None] | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        # only the simulator's Oracle is told the coming acceptance run
        self.foresee = getattr(self.policy, "foresee", None)

    def arrival(self, index: int) -> None:
        """Request ``index`` arrives; it starts at once unless an earlier one is running."""
        prompt = self.prompts[index % len(self.prompts)]
        request = Request(
            index,
            f"{self.name}-{index}",
            self.prompt_lengths[index] if self.prompt_lengths else prompt.tokens,
            prompt.acceptance,
            prompt.matches,
            prompt.matches_after_accept,
            self.engine.now,
            self.answer_tokens[index] if self.answer_tokens else self.max_tokens,
        )
        self.waiting.append(request)
        if self.current is None:
            self._start_next()

    def _start_next(self) -> None:
        request = self.current = self.waiting.popleft()
        now = self.engine.now
        self._context = request.prompt_tokens
        if self.mode == "edge-only":
            # the last prompt token is fed by the first step
            prefill = self.profile.draft_prefill_ms(request.prompt_tokens - 1) * self.speed
            self._compute(prefill, "prefill", self._step_alone)
            return
        gamma = self.policy.next_gamma(request.prompt_tokens)  # the client asks once for ``open``
        self.uplink.send(
            self.profile.open_bytes(request.prompt_tokens),
            self.server.arrive,
            Open(self, request.prompt_tokens, self._server_budget(request), self.mode, gamma),
        )
        request.first_token = {"t_open_sent": now / 1000.0}
        if self.mode != "dsd":
            self._prefill_done = now  # the edge holds no draft state to prefill
            return
        prefill = self.profile.draft_prefill_ms(request.prompt_tokens) * self.speed
        if isinstance(self.cpu, CoreShare):
            self._prefill_done = math.inf
            self.cpu.compute(prefill, self._prefilled, beside=self.beside.get("prefill", 1.0))
        else:
            prefill *= self._beside_now("prefill")
            request.first_token["draft_prefill_cpu_ms"] = prefill
            self._prefill_done = self._computing_until = self.cpu.finish(now, prefill)

    def _compute(self, work: float, op: str, then: Callable[[None], None]) -> None:
        """Compute ``work`` ms at full speed on this edge's CPU, then call ``then``."""
        if isinstance(self.cpu, CoreShare):
            self.cpu.compute(work, then, beside=self.beside.get(op, 1.0))
        else:
            self._computing_until = self.cpu.finish(self.engine.now, work * self._beside_now(op))
            self.engine.at(self._computing_until, then, None)

    def _step_alone(self, _: None) -> None:
        """Edge-only: one draft step, which feeds one token and predicts the next: a round's
        further step (nothing to crop), not its first."""
        step = self.profile.draft_step_ms(self._context) * self.speed
        self._compute(step, "step", self._stepped_alone)

    def _stepped_alone(self, _: None) -> None:
        request = self.current
        assert request is not None
        request.output_tokens += 1
        self._context += 1
        if request.t_first_token is None:
            request.t_first_token = self.engine.now
        if request.output_tokens < request.max_tokens:
            self._step_alone(None)
            return
        request.t_done = self.engine.now
        self._next_request(request)

    def _beside_now(self, op: str) -> float:
        """On a quota of its own, a computation is priced by whether the target computes as
        it starts (a shared core re-plans as the target starts and stops)."""
        return self.beside.get(op, 1.0) if self.server.busy else 1.0

    def computing(self) -> bool:
        """Whether this edge is on its CPU now (what slows the target beside it)."""
        if isinstance(self.cpu, CoreShare):
            return self.cpu.running
        return self.engine.now < self._computing_until

    def _prefilled(self, _: None) -> None:
        self._prefill_done = self.engine.now
        assert self.current is not None and isinstance(self.cpu, CoreShare)
        self.current.first_token["draft_prefill_cpu_ms"] = self.cpu.spent_ms
        if self._opened_early is not None:
            opened, self._opened_early = self._opened_early, None
            self.opened(opened)

    def opened(self, message: Open) -> None:
        """The first token arrives; it is out once the draft's own prefill has finished too."""
        if self.engine.now < self._prefill_done:
            if self._prefill_done < math.inf:
                self.engine.at(self._prefill_done, self.opened, message)
            else:
                self._opened_early = message
            return
        request = self.current
        assert request is not None
        started = request.first_token["t_open_sent"] * 1000.0
        request.first_token.update(
            open_server_t_recv=message.t_recv / 1000.0,
            open_server_t_send=message.t_send / 1000.0,
            target_prefill_ms=message.prefill_ms,
            draft_prefill_ms=self._prefill_done - started,
        )
        request.t_first_token = self.engine.now
        request.output_tokens = 1
        self._all_accepted = False
        self._context += 1
        if request.output_tokens >= request.max_tokens:
            self._finish(request)
        elif self.mode == "dsd":
            self._draft()

    def tokens(self, reply: Tokens) -> None:
        """A streaming session's tokens, logged as a round the way the client logs them."""
        request = self.current
        assert request is not None
        emitted = min(reply.emitted, request.max_tokens - request.output_tokens)
        request.output_tokens += emitted
        self._context += emitted
        stream = {
            "drafted": reply.drafted,
            "accepted": reply.accepted,
            "batch_size": reply.batch_size,
            "compute_ms": reply.compute_ms,
            "t_send": reply.t_send / 1000.0,
        }
        record = RoundRecord.of_stream(
            request.session,
            self.name,
            request.rounds,
            stream,
            emitted=emitted,
            context_len=self._context,
            t_recv=self.engine.now / 1000.0,
            bytes_down=reply.bytes,
        )
        self.log.write("round", **record.event())
        request.rounds += 1
        self.rounds += 1
        if reply.done or request.output_tokens >= request.max_tokens:
            self._finish(request)

    def cloud_acceptance_run(self, gamma: int, after_accept: bool) -> int:
        """A fused round's acceptance, drawn where the cloud drafts it for this edge's
        request, as an edge's own round is (from the next output position)."""
        return self._acceptance_run(self.active, gamma, after_accept=after_accept)

    @property
    def active(self) -> Request:
        """The request in flight: every round, verdict and close belongs to one."""
        assert self.current is not None
        return self.current

    def _draft(self) -> None:
        request = self.active
        # The acceptance run is known before γ is chosen, and independently of it, so that
        # every policy meets the same luck (common random numbers) and a clairvoyant one can
        # be told it.
        run = self._acceptance_run(request, RUN_HORIZON, after_accept=self._all_accepted)
        if self.foresee is not None:
            self.foresee(run)
        gamma = self.policy.next_gamma(self._context)
        if self.fixed_rounds_gamma is None:
            gamma = max(0, min(gamma, request.max_tokens - request.output_tokens - 1))
        if gamma > run == RUN_HORIZON:
            run = self._acceptance_run(request, gamma, run, self._all_accepted)
        work = self.profile.draft_ms(gamma, self._context, self._all_accepted) * self.speed
        self._gamma, self._run, self._t_draft, self._draft_cpu_ms = (
            gamma,
            run,
            self.engine.now,
            work,
        )
        if isinstance(self.cpu, CoreShare):
            self.cpu.compute(work, self._drafted, beside=self.beside.get("step", 1.0))
        else:
            self._draft_cpu_ms = work = work * self._beside_now("step")
            # The end is known now, and the access uplink is this edge's alone, so the send
            # after drafting can be placed on it at once (one event fewer per round).
            self._computing_until = self.cpu.finish(self._t_draft, work)
            self._send_draft(self._computing_until)

    def _drafted(self, _: None) -> None:
        assert isinstance(self.cpu, CoreShare)
        self._draft_cpu_ms = self.cpu.spent_ms
        self._send_draft(self.engine.now)

    def _send_draft(self, t_send: float) -> None:
        self._t_send, self._draft_ms = t_send, t_send - self._t_draft
        self._bytes_up = self.profile.verify_bytes(self._gamma)
        verify = Verify(self, self._gamma, self._run)
        if self.policy.asks_server:
            verify.draft_ms = self._draft_ms
            self._bytes_up += protocol.ADVICE_REQUEST_BYTES
        self.uplink.send(self._bytes_up, self.server.arrive, verify, t_send)

    def _acceptance_run(
        self, request: Request, limit: int, start: int = 0, after_accept: bool = False
    ) -> int:
        """How many tokens from the next output position the target would accept, counting
        at most ``limit``: under greedy verification the profile's recorded matches fix it
        where they reach (the round's first token from the matches after a fully accepted
        round when the last round was one: ``after_accept``); past them (or for a prompt
        not profiled) it is drawn."""
        matches, position = request.matches, request.output_tokens
        run = start
        first = request.matches_after_accept if after_accept else matches
        if run == 0 and limit > 0 and position < len(first) and position < len(matches):
            if not first[position]:
                return 0
            run = 1
        while run < limit and position + run < len(matches) and matches[position + run]:
            run += 1
        if run < limit and position + run >= len(matches):
            run = sample_run(request.acceptance, limit, self.accept_rng, start=run)
        return run

    def verdict(self, verdict: Verdict) -> None:
        request = self.active
        now = self.engine.now
        emitted = verdict.accepted + 1
        if self.fixed_rounds_gamma is None:
            emitted = min(emitted, request.max_tokens - request.output_tokens)
        request.output_tokens += emitted
        self._context += emitted
        hint = verdict.gamma_hint
        drafted = DraftedRound(
            self._gamma, self._draft_ms, self._t_send / 1000.0, self._bytes_up, self._draft_cpu_ms
        )
        record = RoundRecord.of_verdict(
            drafted,
            verdict,
            edge=self.name,
            index=request.rounds,
            emitted=emitted,
            context_len=self._context,
            t_recv=now / 1000.0,
            bytes_down=self.profile.verdict_bytes + (protocol.ADVICE_REPLY_BYTES if hint else 0),
        )
        self.policy.observe(observation_from_round(self.log.write("round", **record.event())))
        self._all_accepted = self._gamma > 0 and verdict.accepted == self._gamma
        request.rounds += 1
        self.rounds += 1
        if self.fixed_rounds_gamma is not None:
            if request.rounds >= math.ceil(request.max_tokens / self.fixed_rounds_gamma):
                request.output_tokens = request.max_tokens  # as DSD-Sim credits it
                self._finish(request)
            else:
                self._draft()
        elif verdict.done or request.output_tokens >= request.max_tokens:
            self._finish(request)
        else:
            self._draft()

    def _server_budget(self, request: Request) -> int:
        """The budget ``open`` gives the target: the request's, or under fixed rounds more
        than its rounds can emit (only the edge ends it)."""
        if self.fixed_rounds_gamma is None:
            return request.max_tokens
        return (self.fixed_rounds_gamma + 1) * request.max_tokens + 1

    def _finish(self, request: Request) -> None:
        request.t_done = self.engine.now
        self.uplink.send(self.profile.close_bytes, self.server.arrive, Close(self))

    def closed(self, _: None) -> None:
        self._next_request(self.active)

    def _next_request(self, request: Request) -> None:
        """``request`` is over: log it, then start the next one, if any."""
        self.write_request(request)
        self.finished += 1
        self.current = None
        if self.closed_loop and request.index + 1 < self.requests:
            if self.think_ms:
                self.engine.at(
                    self.engine.now + self.think_ms[request.index], self.arrival, request.index + 1
                )
            else:
                self.arrival(request.index + 1)
        elif self.waiting:
            self._start_next()

    def write_request(self, request: Request, error: str | None = None) -> None:
        self.log.write(
            "request",
            session=request.session,
            edge=self.name,
            mode=self.mode,
            prompt_tokens=request.prompt_tokens,
            output_tokens=request.output_tokens,
            rounds=request.rounds,
            t_arrival=request.t_arrival / 1000.0,
            t_first_token=_seconds(request.t_first_token),
            t_done=_seconds(request.t_done),
            **request.first_token,
            **({"error": error} if error else {}),
        )

    def abandon(self, reason: str) -> int:
        """At the end of a run: log every request not finished, as failed; returns how many."""
        left = [self.current] if self.current else []
        left += list(self.waiting)
        for request in left:
            self.write_request(request, reason)
        return len(left)


def _seconds(time_ms: float | None) -> float | None:
    return None if time_ms is None else time_ms / 1000.0
