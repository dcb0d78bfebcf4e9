"""Window policies (choose γ each round) and batching policies (when the target runs a batch).

These are plain objects shared by the real processes and the simulator: the simulator
imports and calls exactly these, never a copy.
"""

from __future__ import annotations

from collections import deque
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
    )


class WindowPolicy(Protocol):
    """Chooses γ before each round and sees the outcome after it."""

    name: str

    def next_gamma(self, context_len: int) -> int: ...

    def observe(self, observation: RoundObservation) -> None: ...


class ObservationHistory:
    """A bounded record of recent rounds, for policies that adapt."""

    def __init__(self, size: int = 32) -> None:
        self.rounds: deque[RoundObservation] = deque(maxlen=size)

    def add(self, observation: RoundObservation) -> None:
        self.rounds.append(observation)

    @property
    def last(self) -> RoundObservation | None:
        return self.rounds[-1] if self.rounds else None

    def acceptance(self) -> float | None:
        drafted = sum(r.drafted for r in self.rounds)
        return sum(r.accepted for r in self.rounds) / drafted if drafted else None


class Fixed:
    """Always the same γ: the static speculative-decoding baseline."""

    def __init__(self, gamma: int) -> None:
        if gamma < 0:
            raise ValueError(f"gamma must be >= 0, got {gamma}")
        self.gamma = gamma
        self.name = f"fixed-{gamma}"
        self.history = ObservationHistory()

    def next_gamma(self, context_len: int) -> int:
        return self.gamma

    def observe(self, observation: RoundObservation) -> None:
        self.history.add(observation)


def make_window_policy(spec: str) -> WindowPolicy:
    """Build a window policy from a command-line spec such as ``fixed:4``."""
    kind, _, arg = spec.partition(":")
    if kind == "fixed":
        try:
            return Fixed(int(arg or 4))
        except ValueError as exc:
            raise ValueError(f"bad window policy {spec!r}: {exc}") from exc
    raise ValueError(f"unknown window policy {spec!r}; available: fixed:N")


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
