"""Window policies (choose γ each round) and batching policies (when the target runs a batch).

These are plain objects shared by the real processes and the simulator: the simulator
imports and calls exactly these, never a copy.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol


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
    )


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
    """An exponentially weighted mean; None until the first sample."""

    def __init__(self, weight: float) -> None:
        self.weight = weight
        self.value: float | None = None

    def add(self, sample: float) -> None:
        if self.value is None:
            self.value = sample
        else:
            self.value += self.weight * (sample - self.value)


class WindowEstimates:
    """Smoothed signals from the rounds a drafter has seen: what adaptive policies decide from.

    Acceptance is estimated from accepted tokens and first rejections (the maximum-likelihood
    estimate for runs of accepted tokens) with a longer memory, since one round's run ends at
    random. Verify time is kept per token of batch *width* (``overhead_tokens`` + the longest
    row, which every row of a padded batch pays for), and the queue wait in units of verify
    time: under load it is the other batches' verify work ahead of this request.
    """

    def __init__(
        self, smoothing: float, acceptance_smoothing: float, overhead_tokens: float
    ) -> None:
        self.overhead_tokens = overhead_tokens
        self.successes = Ewma(acceptance_smoothing)
        self.failures = Ewma(acceptance_smoothing)
        self.draft_step_ms = Ewma(smoothing)
        self.network_ms, self.network_ms_slow = Ewma(smoothing), Ewma(smoothing / 4)
        self.queue_ms, self.queue_ms_slow = Ewma(smoothing), Ewma(smoothing / 4)
        self.queue_batches = Ewma(smoothing)
        self.verify_ms_per_token = Ewma(smoothing)
        self.batch_size = Ewma(smoothing)
        self.padded_width = Ewma(smoothing)
        self.round_ms_per_token = Ewma(smoothing)
        self.round_ms_per_token_slow = Ewma(smoothing / 4)
        self.last_gamma = 0
        self.context_len = 0

    def alpha(self) -> float | None:
        s, f = self.successes.value, self.failures.value
        if s is None or f is None or s + f <= 0:
            return None
        return min(s / (s + f), 0.999)

    def ready(self) -> bool:
        return self.alpha() is not None and self.verify_ms_per_token.value is not None

    def charged_verify_ms(self, gamma: int) -> float:
        """The verify time this edge's row is charged when it drafts ``gamma`` tokens.

        A batch is as wide as its longest row. Up to the width other edges' rows pad it to,
        a longer row costs nothing more; beyond it, every row of the batch waits for the
        extra width, so that part is charged once per row. Alone, this is the verify time.
        """
        padded = self.padded_width.value or 0.0
        rows = max(1.0, self.batch_size.value or 1.0)
        width = max(float(gamma + 1), padded) + (rows - 1.0) * max(0.0, gamma + 1 - padded)
        return (self.verify_ms_per_token.value or 0.0) * (self.overhead_tokens + width)

    def observe(self, o: RoundObservation) -> None:
        self.network_ms.add(o.network_ms)
        self.network_ms_slow.add(o.network_ms)
        self.queue_ms.add(o.server_queue_ms)
        self.queue_ms_slow.add(o.server_queue_ms)
        self.last_gamma, self.context_len = o.gamma, o.context_len
        self.batch_size.add(o.batch_size)
        # a batch wider than this edge's row was widened by another edge: the padding up to
        # that width is paid for anyway (0: this edge's own row is the widest, or alone)
        self.padded_width.add(o.batch_width if o.batch_width > o.gamma + 1 else 0)
        if o.server_verify_ms > 0:
            self.verify_ms_per_token.add(
                o.server_verify_ms / (self.overhead_tokens + max(o.batch_width, o.gamma + 1))
            )
            self.queue_batches.add(o.server_queue_ms / o.server_verify_ms)
        if o.drafted > 0:
            self.draft_step_ms.add(o.draft_step_ms)
            self.successes.add(o.accepted)
            self.failures.add(1.0 if o.accepted < o.drafted else 0.0)
        round_ms = o.gamma * o.draft_step_ms + o.round_trip_ms
        self.round_ms_per_token.add(round_ms / (o.accepted + 1))
        self.round_ms_per_token_slow.add(round_ms / (o.accepted + 1))


AWC_OBJECTIVES = ("latency", "cloud")


class AWC:
    """Adaptive window control: each round, the γ with the most expected tokens per unit time.

    From ``WindowEstimates`` it picks γ in [low, high] maximising
    E[tokens](γ) / (γ·t_draft + network + t_verify(γ)·(1 + queue))  (objective ``latency``),
    or E[tokens](γ) / t_verify(γ), the tokens per unit of cloud verify work (``cloud``).
    Verify time is modelled as proportional to (``overhead_tokens`` + γ + 1): a forward pass
    costs a fixed part plus a part per token. The queue wait, in units of verify time, is
    the verify work of other batches ahead; it is assumed to grow with γ like this edge's own,
    as if the edges sharing the server chose alike (they run the same policy in the same
    world). In a batch with other rows, the verify time is charged as
    ``WindowEstimates.charged_verify_ms`` says: padding up to the width others set is free,
    widening the batch is charged for every row. So edges sharing batches settle on one
    width instead of each padding everyone's batches with its own long rows. The network
    part includes sending the drafts; the few bytes a drafted token adds to a message are
    not modelled. AWC leaves the current γ only for a predicted gain above ``hysteresis``,
    so that noise does not make it oscillate.
    """

    def __init__(
        self,
        objective: str = "latency",
        low: int = 1,
        high: int = 16,
        start: int = 4,
        smoothing: float = 0.3,
        acceptance_smoothing: float = 0.1,
        hysteresis: float = 0.05,
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
        alpha = e.alpha()
        if alpha is None or not e.ready():
            return None
        verify = e.charged_verify_ms(gamma)
        if self.objective == "cloud":
            return expected_tokens(alpha, gamma) / verify
        cost = (
            gamma * (e.draft_step_ms.value or 0.0)
            + (e.network_ms.value or 0.0)
            + verify * (1.0 + (e.queue_batches.value or 0.0))
        )
        return expected_tokens(alpha, gamma) / cost

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


POLICY_SPECS = "fixed:N, heuristic[:START], awc[:latency|cloud]"


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
