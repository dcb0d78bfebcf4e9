"""Window policies (choose γ each round) and batching policies (when the target runs a batch).

These are plain objects shared by the real processes and the simulator: the simulator
imports and calls exactly these, never a copy.
"""

from __future__ import annotations

import collections
import functools
import math
import statistics
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from runtime.mlp import Mlp, load_json


@dataclass(slots=True)
class RoundObservation:
    """What a drafter can observe after one round; window policies learn from these.

    Not frozen: the simulator makes one per simulated round, and a frozen dataclass costs
    several times more to build."""

    gamma: int
    drafted: int
    accepted: int
    round_trip_ms: float
    server_verify_ms: float
    server_queue_ms: float
    batch_size: int
    draft_step_ms: float
    context_len: int
    batch_width: int = 0  # tokens in the batch's longest row (every row is padded to it)
    peer_width: int = 0  # tokens in the longest of the batch's other rows (0: alone)
    batch_accepted: int = -1  # accepted tokens over all the batch's rows (-1: not reported)
    batch_rejected: int = 0  # rows of the batch that ended in a rejection
    utilisation: float = 0.0  # the server's busy share of its recent past

    @property
    def network_ms(self) -> float:
        """Round trip minus the server's reported time: what the network (and stacks) cost."""
        return max(0.0, self.round_trip_ms - self.server_verify_ms - self.server_queue_ms)


def observation_from_round(record: Mapping[str, Any]) -> RoundObservation:
    """What a policy observes, built from a ``round`` event record.

    The draft client and the simulator both feed their policies through this one function
    from the records they log, so a policy sees the same thing in both worlds.
    """
    gamma = record["gamma"]
    return RoundObservation(
        gamma=gamma,
        drafted=record["drafted"],
        accepted=record["accepted"],
        round_trip_ms=(record["t_recv"] - record["t_send"]) * 1000.0,
        server_verify_ms=record["verify_ms"],
        server_queue_ms=record["queue_ms"],
        batch_size=record["batch_size"],
        draft_step_ms=record["draft_ms"] / gamma if gamma else 0.0,
        context_len=record["context_len"],
        batch_width=record.get("batch_width", gamma + 1),
        peer_width=record.get("peer_width", 0),
        batch_accepted=record.get("batch_accepted", -1),
        batch_rejected=record.get("batch_rejected", 0),
        utilisation=record.get("utilisation", 0.0),
    )


def peer_widths(widths: list[int]) -> list[int]:
    """For each row of a batch, the width of the longest other row (0 for a lone row): the
    width a row's batch has whatever the row itself drafts."""
    ordered = sorted(widths, reverse=True)
    first, second = ordered[0], ordered[1] if len(ordered) > 1 else 0
    return [second if width == first else first for width in widths]


class WindowPolicy(Protocol):
    """Chooses γ before each round and sees the outcome after it."""

    name: str

    def next_gamma(self, context_len: int) -> int: ...

    def observe(self, observation: RoundObservation) -> None: ...


class Fixed:
    """Always the same γ: the static speculative-decoding baseline."""

    def __init__(self, gamma: int) -> None:
        if gamma < 0:
            raise ValueError(f"gamma must be >= 0, got {gamma}")
        self.gamma = gamma
        self.name = f"fixed-{gamma}"

    def next_gamma(self, context_len: int) -> int:
        return self.gamma

    def observe(self, observation: RoundObservation) -> None:
        """A fixed window learns nothing."""


class Heuristic:
    """transformers' assisted-generation schedule: γ + 2 after a fully accepted window,
    γ − 1 otherwise, within [low, high]."""

    def __init__(self, start: int = 4, low: int = 1, high: int = 16) -> None:
        if not 1 <= low <= start <= high:
            raise ValueError(f"need 1 <= low <= start <= high, got {low}, {start}, {high}")
        self.gamma, self.low, self.high = start, low, high
        self.name = "heuristic"

    def next_gamma(self, context_len: int) -> int:
        return self.gamma

    def observe(self, observation: RoundObservation) -> None:
        if observation.drafted == 0:
            return  # a round that drafted nothing (the budget's last token) says nothing
        if observation.accepted == observation.drafted:
            self.gamma = min(self.high, self.gamma + 2)
        else:
            self.gamma = max(self.low, self.gamma - 1)


def expected_tokens(alpha: float, gamma: int) -> float:
    """Tokens one round emits on average: accepted drafts plus the correction or bonus,
    (1 − α^(γ+1)) / (1 − α) when each draft token is accepted with probability α."""
    if alpha >= 1.0:
        return gamma + 1.0
    return (1.0 - alpha ** (gamma + 1)) / (1.0 - alpha)


class Ewma:
    """An exponentially weighted mean; ``initial`` (None: unknown) until the first sample,
    which replaces an unknown value and is averaged into a given one."""

    def __init__(self, weight: float, initial: float | None = None) -> None:
        self.weight = weight
        self.value: float | None = initial

    def add(self, sample: float) -> None:
        if self.value is None:
            self.value = sample
        else:
            self.value += self.weight * (sample - self.value)


def _ratio(successes: Ewma, failures: Ewma) -> float:
    s, f = successes.value or 0.0, failures.value or 0.0
    return min(s / (s + f), 0.999) if s + f > 0 else 0.5


class WindowEstimates:
    """Smoothed signals from the rounds a drafter has seen: what adaptive policies decide from.

    Acceptance is estimated from accepted tokens and first rejections (the maximum-likelihood
    estimate for runs of accepted tokens) with a longer memory, since one round's run ends at
    random, and starts from a prior of α = 0.5: one fully accepted first round must not read
    as α = 1. Verify time is kept per token of batch width (``overhead_tokens`` + the longest
    row, which every row of a padded batch pays for); the round time and the queue wait in
    units of verify time; the server's utilisation and the batch's acceptance as verdicts
    report them.
    """

    def __init__(
        self,
        smoothing: float = 0.3,
        acceptance_smoothing: float = 0.1,
        overhead_tokens: float = 4.0,
    ) -> None:
        self.overhead_tokens = overhead_tokens
        self.successes = Ewma(acceptance_smoothing, initial=1.0)
        self.failures = Ewma(acceptance_smoothing, initial=1.0)
        self.draft_step_ms = Ewma(smoothing)
        self.recent_network_ms: collections.deque[float] = collections.deque(maxlen=5)
        self.network_ms, self.network_ms_slow = Ewma(smoothing), Ewma(smoothing / 4)
        self.queue_ms, self.queue_ms_slow = Ewma(smoothing), Ewma(smoothing / 4)
        self.queue_batches = Ewma(smoothing)
        self.round_batches = Ewma(smoothing)
        self.utilisation = Ewma(smoothing)
        self.batch_successes = Ewma(acceptance_smoothing, initial=1.0)
        self.batch_failures = Ewma(acceptance_smoothing, initial=1.0)
        self.verify_ms_per_token = Ewma(smoothing)
        self.batch_size = Ewma(smoothing)
        self.peer_width = Ewma(smoothing)
        self.round_ms_per_token = Ewma(smoothing)
        self.round_ms_per_token_slow = Ewma(smoothing / 4)
        self.last_gamma = 0
        self.context_len = 0

    def alpha(self) -> float:
        return _ratio(self.successes, self.failures)

    def batch_alpha(self) -> float:
        """Acceptance over the rows this edge's requests were batched with (its own where
        the server does not report it)."""
        return _ratio(self.batch_successes, self.batch_failures)

    def server_cycle_ms(self, gamma: int) -> float:
        """How long the server takes to verify a round of every edge it serves, were all of
        them to draft ``gamma``: its busy share of this edge's round, scaled with the verify
        time. On a saturated server this, not the edge's own path, sets the round time."""
        busy = (self.utilisation.value or 0.0) * (self.round_batches.value or 0.0)
        return busy * self.verify_ms(gamma)

    def typical_network_ms(self) -> float:
        """The median network time of the last few rounds: recorded round trips have
        one-round spikes (a retransmission, a handover) that are over before a window
        drafted for them could pay off, while a lasting change shows within three rounds."""
        return statistics.median(self.recent_network_ms) if self.recent_network_ms else 0.0

    def ready(self) -> bool:
        """Whether a verdict has been seen: before it, nothing is known of the server."""
        return self.verify_ms_per_token.value is not None

    def verify_ms(self, gamma: int) -> float:
        """Predicted verify time of a batch in which this edge's row drafts ``gamma`` tokens:
        a batch is as wide as its longest row, so at least as wide as other edges' rows have
        been making it; up to that width a longer row costs nothing more."""
        width = max(gamma + 1.0, self.peer_width.value or 0.0)
        return (self.verify_ms_per_token.value or 0.0) * (self.overhead_tokens + width)

    def observe(self, o: RoundObservation) -> None:
        self.recent_network_ms.append(o.network_ms)
        self.network_ms.add(o.network_ms)
        self.network_ms_slow.add(o.network_ms)
        self.queue_ms.add(o.server_queue_ms)
        self.queue_ms_slow.add(o.server_queue_ms)
        self.last_gamma, self.context_len = o.gamma, o.context_len
        self.batch_size.add(o.batch_size)
        if o.server_verify_ms > 0:
            self.verify_ms_per_token.add(
                o.server_verify_ms / (self.overhead_tokens + max(o.batch_width, o.gamma + 1))
            )
            self.queue_batches.add(o.server_queue_ms / o.server_verify_ms)
            server_ms = o.server_queue_ms + o.server_verify_ms
            round_ms = o.gamma * o.draft_step_ms + self.typical_network_ms() + server_ms
            self.round_batches.add(round_ms / o.server_verify_ms)
            self.utilisation.add(o.utilisation)
            self.peer_width.add(o.peer_width)
        if o.drafted > 0:
            self.draft_step_ms.add(o.draft_step_ms)
            self.successes.add(o.accepted)
            self.failures.add(1.0 if o.accepted < o.drafted else 0.0)
            if o.batch_accepted >= 0:
                self.batch_successes.add(o.batch_accepted / o.batch_size)
                self.batch_failures.add(o.batch_rejected / o.batch_size)
            else:
                self.batch_successes.add(o.accepted)
                self.batch_failures.add(1.0 if o.accepted < o.drafted else 0.0)
        round_ms = o.gamma * o.draft_step_ms + o.round_trip_ms
        self.round_ms_per_token.add(round_ms / (o.accepted + 1))
        self.round_ms_per_token_slow.add(round_ms / (o.accepted + 1))


AWC_OBJECTIVES = ("latency", "cloud")


class AWC:
    """Adaptive window control: each round, the γ with the most expected tokens per unit time.

    From ``WindowEstimates`` it picks γ in [low, high] maximising, for objective ``latency``,
    the smaller of two rates: the edge's own, E[tokens](γ) / (γ·t_draft + network +
    t_verify(γ)), and its share of the server's, E_batch[tokens](γ) / server cycle(γ), where
    the cycle is the server's busy time per round of every edge (its reported utilisation
    times this edge's round time, scaled with the verify time) and E_batch uses the
    acceptance of the rows this edge shares batches with. Alone or on an idle server the
    first binds; on a saturated one the second does, and since every edge then weighs the
    same batch acceptance, they settle on one width rather than each padding everyone's
    batches with its own long rows. With ``cloud``: E[tokens](γ) / t_verify(γ), the tokens
    per unit of cloud verify work. E[tokens] = (1 − α^(γ+1)) / (1 − α). Verify time is
    modelled as proportional to (``overhead_tokens`` + width): a forward pass costs a fixed
    part plus a part per token of its longest row; up to the width other rows give the
    batch anyway, a longer row costs nothing more. The network part includes sending the
    drafts; the few bytes a drafted token adds to a message are not modelled. AWC leaves the
    current γ only for a predicted gain above ``hysteresis``, so that noise does not make it
    oscillate.
    """

    def __init__(
        self,
        objective: str = "latency",
        low: int = 1,
        high: int = 16,
        start: int = 4,
        smoothing: float = 0.3,
        acceptance_smoothing: float = 0.1,
        hysteresis: float = 0.02,
        overhead_tokens: float = 4.0,
    ) -> None:
        if objective not in AWC_OBJECTIVES:
            raise ValueError(f"AWC objective must be one of {', '.join(AWC_OBJECTIVES)}")
        if not 1 <= low <= start <= high:
            raise ValueError(f"need 1 <= low <= start <= high, got {low}, {start}, {high}")
        self.objective, self.low, self.high = objective, low, high
        self.gamma = start
        self.hysteresis = hysteresis
        self.name = f"awc-{objective}"
        self.estimates = WindowEstimates(smoothing, acceptance_smoothing, overhead_tokens)

    def predicted_rate(self, gamma: int) -> float | None:
        """Expected tokens per ms (``latency``) or per verify-ms (``cloud``) at this γ."""
        e = self.estimates
        if not e.ready():
            return None
        alpha = e.alpha()
        verify = e.verify_ms(gamma)
        if self.objective == "cloud":
            return expected_tokens(alpha, gamma) / verify
        own_path = gamma * (e.draft_step_ms.value or 0.0) + e.typical_network_ms() + verify
        edge_bound = expected_tokens(alpha, gamma) / own_path
        server_bound = expected_tokens(e.batch_alpha(), gamma) / max(e.server_cycle_ms(gamma), 1e-9)
        return min(edge_bound, server_bound)

    def next_gamma(self, context_len: int) -> int:
        current = self.predicted_rate(self.gamma)
        if current is None:
            return self.gamma
        rates = {g: self.predicted_rate(g) or 0.0 for g in range(self.low, self.high + 1)}
        best = max(rates, key=rates.__getitem__)
        if rates[best] > current * (1.0 + self.hysteresis):
            self.gamma = best
        return self.gamma

    def observe(self, observation: RoundObservation) -> None:
        self.estimates.observe(observation)


class Oracle:
    """γ = the coming round's acceptance run, capped at ``high``: an upper bound for AWC.

    Only the simulator can run it: it draws how many drafted tokens in a row the target
    will accept before γ is chosen, independently of γ, and tells this policy (``foresee``).
    Drafting exactly that many wastes no draft step and no verify slot on a rejected token,
    yet emits every token the round could. It foresees acceptance only, not the network or
    the server. The real draft client has no future to tell it, so ``make_window_policy``
    does not offer it."""

    def __init__(self, high: int = 16) -> None:
        self.high = high
        self.name = "oracle"
        self._run = 1

    def foresee(self, run: int) -> None:
        self._run = run

    def next_gamma(self, context_len: int) -> int:
        return min(self._run, self.high)

    def observe(self, observation: RoundObservation) -> None:
        """Nothing to learn: it is told the future."""


WINDOW_FEATURES = (
    "acceptance",
    "log_draft_step_ms",
    "log_network_ms",
    "network_change",
    "log_verify_ms_per_token",
    "queue_batches",
    "queue_change",
    "log_batch_size",
    "peer_width",
    "utilisation",
    "batch_acceptance",
    "log_tpot_ms",
    "tpot_change",
    "last_gamma",
    "log_context_len",
)
LEARNED_WEIGHTS = Path(__file__).with_name("awc_learned.json")


def _change(fast: Ewma, slow: Ewma, floor: float) -> float:
    """A signal's trend: its short-memory mean relative to its long-memory one."""
    if fast.value is None or slow.value is None:
        return 0.0
    return (fast.value - slow.value) / (slow.value + floor)


def window_features(e: WindowEstimates) -> np.ndarray | None:
    """``WINDOW_FEATURES`` of the estimates, on scales a network takes well (logs of times,
    trends as relative changes); None before the first verdict."""
    if not e.ready():
        return None
    return np.array(
        [
            e.alpha(),
            math.log1p(e.draft_step_ms.value or 0.0),
            math.log1p(e.typical_network_ms()),
            _change(e.network_ms, e.network_ms_slow, 10.0),
            math.log1p(e.verify_ms_per_token.value or 0.0),
            e.queue_batches.value or 0.0,
            _change(e.queue_ms, e.queue_ms_slow, 10.0),
            math.log(max(1.0, e.batch_size.value or 1.0)),
            e.peer_width.value or 0.0,
            e.utilisation.value or 0.0,
            e.batch_alpha(),
            math.log1p(e.round_ms_per_token.value or 0.0),
            _change(e.round_ms_per_token, e.round_ms_per_token_slow, 1.0),
            float(e.last_gamma),
            math.log1p(e.context_len),
        ]
    )


@functools.cache
def load_learned(path: Path) -> tuple[Mlp, tuple[int, ...]]:
    """The network and the γ it scores, from a weights file written by train_awc.py."""
    data = load_json(path)
    try:
        if tuple(data["features"]) != WINDOW_FEATURES:
            raise ValueError("it was trained on other features; retrain with train_awc.py")
        return Mlp.from_json(data["network"]), tuple(int(g) for g in data["gammas"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{path} is not a learned window policy: {exc}") from exc


class AWCLearned:
    """The DSD paper's WC-DNN, trained: a small network scores each γ from the same
    estimates AWC keeps, and the best-scoring γ is drafted.

    The scores are the throughput of each γ relative to the best, as the simulator found
    them for many simulated worlds (``scripts/train_awc.py``). It runs with numpy alone.
    It switches γ only when the best score beats the current one by ``hysteresis``.
    """

    def __init__(self, weights: Path = LEARNED_WEIGHTS, start: int = 4, hysteresis: float = 0.02):
        self.network, self.gammas = load_learned(Path(weights))
        self.gamma = min(self.gammas, key=lambda g: abs(g - start))
        self.hysteresis = hysteresis
        self.name = "awc-learned"
        self.estimates = WindowEstimates()

    def next_gamma(self, context_len: int) -> int:
        features = window_features(self.estimates)
        if features is None:
            return self.gamma
        scores = self.network(features)
        best = int(np.argmax(scores))
        if scores[best] > scores[self.gammas.index(self.gamma)] + self.hysteresis:
            self.gamma = self.gammas[best]
        return self.gamma

    def observe(self, observation: RoundObservation) -> None:
        self.estimates.observe(observation)


POLICY_SPECS = "fixed:N, heuristic[:START], awc[:latency|cloud], learned[:WEIGHTS.json]"


def make_window_policy(spec: str) -> WindowPolicy:
    """Build a window policy from a spec such as ``fixed:4``, ``heuristic`` or ``awc:cloud``."""
    kind, _, arg = spec.partition(":")
    try:
        if kind == "fixed":
            return Fixed(int(arg or 4))
        if kind == "heuristic":
            return Heuristic(int(arg or 4))
        if kind == "awc":
            return AWC(arg or "latency")
        if kind == "learned":
            return AWCLearned(Path(arg) if arg else LEARNED_WEIGHTS)
    except ValueError as exc:
        raise ValueError(f"bad window policy {spec!r}: {exc}") from exc
    raise ValueError(f"unknown window policy {spec!r}; available: {POLICY_SPECS}")


@dataclass(frozen=True)
class BatchingPolicy:
    """Forms verification batches on the target.

    A batch is dispatched when it is full, when every active session is already waiting
    (nobody else can join), or when the oldest request has waited ``max_wait_ms``.
    """

    max_batch: int = 8
    max_wait_ms: float = 5.0

    def __post_init__(self) -> None:
        if self.max_batch < 1 or self.max_wait_ms < 0:
            raise ValueError("max_batch must be >= 1 and max_wait_ms >= 0")

    def should_dispatch(self, pending: int, active_sessions: int, oldest_wait_ms: float) -> bool:
        if pending == 0:
            return False
        return (
            pending >= self.max_batch
            or pending >= active_sessions
            or oldest_wait_ms >= self.max_wait_ms
        )

    def wait_budget_ms(self, oldest_wait_ms: float) -> float:
        """How long the server may sleep before it must reconsider the oldest request."""
        return max(0.0, self.max_wait_ms - oldest_wait_ms)
