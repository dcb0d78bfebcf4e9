"""Router policies: which of several target replicas serves a new session.

A session stays on the target that opened it (its KV cache lives there); only ``open``
is routed. The load a policy sees is each target's outstanding sessions (opened, not yet
closed), which the router counts itself, so the real router (``runtime.router``) and the
simulator's cloud call the same objects with the same information.

Specs: ``round-robin``, ``jsq`` (join the shortest queue: fewest outstanding sessions, the
lowest index on a tie), ``p2c`` (power of two choices: two distinct targets drawn at
random, the one with fewer outstanding; seeded).
"""

from __future__ import annotations

import random
from typing import Protocol

ROUTERS = ("round-robin", "jsq", "p2c")


class Router(Protocol):
    def choose(self, outstanding: list[int]) -> int:
        """The target index for a new session, given each target's outstanding sessions."""
        ...


class RoundRobin:
    """Each new session to the next target in turn, whatever their load."""

    def __init__(self) -> None:
        self._next = 0

    def choose(self, outstanding: list[int]) -> int:
        index = self._next % len(outstanding)
        self._next = index + 1
        return index


class JoinShortestQueue:
    """The target with the fewest outstanding sessions (the lowest index on a tie)."""

    def choose(self, outstanding: list[int]) -> int:
        return min(range(len(outstanding)), key=outstanding.__getitem__)


class PowerOfTwoChoices:
    """Two distinct targets at random, the less loaded of them (the first drawn on a tie):
    nearly JSQ's balance while looking at two queues, not all."""

    def __init__(self, seed: int = 0) -> None:
        self._rng = random.Random(f"p2c-{seed}")

    def choose(self, outstanding: list[int]) -> int:
        if len(outstanding) == 1:
            return 0
        first, second = self._rng.sample(range(len(outstanding)), 2)
        return second if outstanding[second] < outstanding[first] else first


def make_router(spec: str, seed: int = 0) -> Router:
    """A router from its spec (see the module docstring); ValueError names the choices."""
    if spec == "round-robin":
        return RoundRobin()
    if spec == "jsq":
        return JoinShortestQueue()
    if spec == "p2c":
        return PowerOfTwoChoices(seed)
    raise ValueError(f"unknown router {spec!r} (choose from {', '.join(ROUTERS)})")


class SessionTable:
    """Which target holds each open session, and each target's outstanding count."""

    def __init__(self, router: Router, targets: int, policy: str = "") -> None:
        if targets < 1:
            raise ValueError("a router needs at least one target")
        self.router = router
        self.policy = policy
        self.outstanding = [0] * targets
        self.pinned: dict[str, int] = {}
        self.opened = [0] * targets  # sessions each target was given in all

    def open(self, session: str, candidates: list[int] | None = None) -> int:
        """The target of a new session, among ``candidates`` where given (a client that
        reaches only some targets); a repeated open keeps its target."""
        if session in self.pinned:
            return self.pinned[session]
        if candidates is None:
            index = self.router.choose(list(self.outstanding))
        else:
            index = candidates[self.router.choose([self.outstanding[i] for i in candidates])]
        self.pinned[session] = index
        self.outstanding[index] += 1
        self.opened[index] += 1
        return index

    def target_of(self, session: str) -> int | None:
        return self.pinned.get(session)

    def route(self, session: str, kind: str, candidates: list[int] | None = None) -> int:
        """The target of a session's message of ``kind``: ``open`` chooses one (among
        ``candidates`` where given), ``close`` releases it; a session never opened goes to
        target 0, which answers ``unknown_session``."""
        if kind == "open":
            return self.open(session, candidates)
        pinned = self.target_of(session)
        if kind == "close":
            self.close(session)
        return 0 if pinned is None else pinned

    def route_event(self, session: str, index: int) -> dict[str, object]:
        """The ``route`` event's fields, the same in both worlds."""
        return {
            "session": session,
            "target": index,
            "outstanding": list(self.outstanding),
            "policy": self.policy,
        }

    def close(self, session: str) -> None:
        """The session is over: its target has one fewer outstanding."""
        index = self.pinned.pop(session, None)
        if index is not None:
            self.outstanding[index] -= 1
