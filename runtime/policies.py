"""Window policies (choose γ each round) and batching policies (when the target runs a batch).

These are plain objects shared by the real processes and the simulator: the simulator
imports and calls exactly these, never a copy.
"""

from __future__ import annotations

import functools
import importlib.resources
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from runtime.estimates import WINDOW_FEATURES, WindowEstimates, window_features
from runtime.mlp import Mlp, load_json
from runtime.observations import RoundObservation


class WindowPolicy(Protocol):
    """Chooses γ before each round and sees the outcome after it."""

    name: str
    asks_server: bool  # whether its requests ask the server for a window hint

    def next_gamma(self, context_len: int) -> int: ...

    def observe(self, observation: RoundObservation) -> None: ...


class Fixed:
    """Always the same γ: the static speculative-decoding baseline."""

    asks_server = False

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

    asks_server = False

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

    ``advised``: the edge asks the server for a window (``runtime.window_advice``) and
    drafts the γ the last verdict advised; before the first advice, its own choice.
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
        advised: bool = False,
    ) -> None:
        if objective not in AWC_OBJECTIVES:
            raise ValueError(f"AWC takes {', '.join(AWC_OBJECTIVES)} or server, got {objective!r}")
        if not 1 <= low <= start <= high:
            raise ValueError(f"need 1 <= low <= start <= high, got {low}, {start}, {high}")
        self.objective, self.low, self.high = objective, low, high
        self.gamma = start
        self.hysteresis = hysteresis
        self.asks_server = advised
        self.advice = 0  # the last verdict's window hint (0: none)
        self.name = "awc-server" if advised else f"awc-{objective}"
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
        own_path = gamma * (e.draft_step_ms.value or 0.0) + e.typical_network_ms + verify
        edge_bound = expected_tokens(alpha, gamma) / own_path
        server_bound = expected_tokens(e.batch_alpha(), gamma) / max(e.server_cycle_ms(gamma), 1e-9)
        return min(edge_bound, server_bound)

    def next_gamma(self, context_len: int) -> int:
        if self.asks_server and self.advice:
            self.gamma = min(self.high, max(self.low, self.advice))
            return self.gamma
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
        self.advice = observation.gamma_hint


class Oracle:
    """γ = the coming round's acceptance run, capped at ``high``: an upper bound for AWC.

    Only the simulator can run it: it draws how many drafted tokens in a row the target
    will accept before γ is chosen, independently of γ, and tells this policy (``foresee``).
    Drafting exactly that many wastes no draft step and no verify slot on a rejected token,
    yet emits every token the round could. It foresees acceptance only, not the network or
    the server. The real draft client has no future to tell it, so ``make_window_policy``
    does not offer it."""

    asks_server = False

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


# package data (pyproject.toml), so that an installed runtime finds it too
LEARNED_WEIGHTS = Path(str(importlib.resources.files("runtime") / "awc_learned.json"))


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

    asks_server = False

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


POLICY_SPECS = "fixed:N, heuristic[:START], awc[:latency|cloud|server], learned[:WEIGHTS.json]"


def make_window_policy(spec: str) -> WindowPolicy:
    """Build a window policy from a spec such as ``fixed:4``, ``heuristic`` or ``awc:cloud``."""
    kind, _, arg = spec.partition(":")
    try:
        if kind == "fixed":
            return Fixed(int(arg or 4))
        if kind == "heuristic":
            return Heuristic(int(arg or 4))
        if kind == "awc":
            return AWC(advised=True) if arg == "server" else AWC(arg or "latency")
        if kind == "learned":
            return AWCLearned(Path(arg) if arg else LEARNED_WEIGHTS)
    except ValueError as exc:
        raise ValueError(f"bad window policy {spec!r}: {exc}") from exc
    raise ValueError(f"unknown window policy {spec!r}; available: {POLICY_SPECS}")


@dataclass(frozen=True)
class BatchingPolicy:
    """Forms verification batches on the target.

    A batch is dispatched when it is full, when every active session is already waiting
    (nobody else can join), or when the oldest request has waited ``max_wait_ms``; and at
    once while a streaming (cloud or fused) session decodes, whose rows fill what the
    verifications leave free.
    """

    max_batch: int = 8
    max_wait_ms: float = 5.0

    def __post_init__(self) -> None:
        if self.max_batch < 1 or self.max_wait_ms < 0:
            raise ValueError("max_batch must be >= 1 and max_wait_ms >= 0")

    def should_dispatch(
        self, pending: int, active_sessions: int, oldest_wait_ms: float, streaming: int = 0
    ) -> bool:
        if streaming:
            return True
        if pending == 0:
            return False
        return (
            pending >= self.max_batch
            or pending >= active_sessions
            or oldest_wait_ms >= self.max_wait_ms
        )

    def streaming_rows(self, verifies: int, streaming: int) -> int:
        """How many streaming sessions (the longest open first) get a row beside
        ``verifies`` verifications: the rows those leave free, since an edge waits on each."""
        return max(0, min(streaming, self.max_batch - verifies))

    def wait_budget_ms(self, oldest_wait_ms: float) -> float:
        """How long the server may sleep before it must reconsider the oldest request."""
        return max(0.0, self.max_wait_ms - oldest_wait_ms)
