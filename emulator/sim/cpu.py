"""Hosts' CPUs as the emulator limits them: a quota of its own (``runtime.cpuquota``, which
an emulated edge keeps too), or a core that several quotas share.

Edges sharing a core also compute slower while the target computes on the machine's other
CPU (``runtime.interference``, measured by the profile): each computation names its ratio
(``beside``), and the core's progress is re-planned whenever the target starts or stops.
And each needs more CPU time while others take turns with it on the core, its caches
refilled at every turn (``runtime.timesharing``, measured by the profile: ``sharing``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from emulator.sim.engine import Engine
from runtime.cpuquota import PERIOD_MS

EPSILON = 1e-9


class CoreShare:
    """One host on a ``SharedCore``: its quota, its place in the period, its computation."""

    def __init__(self, core: SharedCore, share: float, phase_ms: float) -> None:
        self.core = core
        self.quota_ms = min(share, 1.0) * core.period_ms
        self.phase_ms = phase_ms % core.period_ms
        self.period = -math.inf
        self.used_ms = 0.0
        self.left_ms = 0.0
        self.beside = 1.0  # how much slower the computation runs while the target computes
        self.spent_ms = 0.0  # CPU time the computation has had so far
        self.then: Callable[[Any], None] | None = None
        self.argument: Any = None

    def compute(
        self,
        work_ms: float,
        then: Callable[[Any], None],
        argument: Any = None,
        beside: float = 1.0,
    ) -> None:
        """Run ``work_ms`` of full-core computation from now (``beside`` times slower while
        the target computes); ``then(argument)`` at its end."""
        self.beside = beside
        self.core.start(self, work_ms, then, argument)

    def refresh(self, now: float) -> None:
        period = math.floor((now - self.phase_ms) / self.core.period_ms + EPSILON)
        if period != self.period:
            self.period, self.used_ms = period, 0.0

    def period_end(self) -> float:
        return self.phase_ms + (self.period + 1) * self.core.period_ms

    @property
    def throttled(self) -> bool:
        return self.used_ms >= self.quota_ms - EPSILON

    @property
    def running(self) -> bool:
        """On the CPU now: computing, and not waiting for its quota."""
        return self.then is not None and not self.throttled


class SharedCore:
    """Hosts pinned to one core, as the emulator pins its edges: at any moment the hosts
    computing and not throttled share the core equally (CFS, equal weights), each progressing
    ``sharing(how many)`` times slower than its share of the core, and each spends its own
    quota. Progress is fluid between the moments anything changes (a computation starts or
    ends, a quota runs out, a period begins), when it is re-planned."""

    def __init__(
        self,
        engine: Engine,
        period_ms: float = PERIOD_MS,
        sharing: Callable[[int], float] = lambda computing: 1.0,
    ) -> None:
        self.engine = engine
        self.period_ms = period_ms
        self.sharing = sharing
        self.hosts: list[CoreShare] = []
        self._last = 0.0
        self._plan = 0  # events of an older plan are ignored
        self.target_busy = False

    def host(self, share: float, phase_ms: float) -> CoreShare:
        host = CoreShare(self, share, phase_ms)
        self.hosts.append(host)
        return host

    def _running(self) -> list[CoreShare]:
        return [h for h in self.hosts if h.running]

    def _slowdown(self, host: CoreShare, running: int) -> float:
        beside = host.beside if self.target_busy else 1.0
        return beside * self.sharing(running)

    def set_target_busy(self, busy: bool) -> None:
        """The target started or stopped computing on its own CPU: progress from now on
        runs at the other rate."""
        if busy != self.target_busy:
            self._advance()
            self.target_busy = busy
            self._replan()

    def _advance(self) -> None:
        now = self.engine.now
        running = self._running()
        if running and now > self._last:
            step = (now - self._last) / len(running)
            for host in running:
                host.left_ms -= step / self._slowdown(host, len(running))
                host.used_ms += step
                host.spent_ms += step
        self._last = now

    def start(
        self, host: CoreShare, work_ms: float, then: Callable[[Any], None], argument: Any
    ) -> None:
        self._advance()
        host.refresh(self.engine.now)
        host.left_ms, host.then, host.argument = max(work_ms, 0.0), then, argument
        host.spent_ms = 0.0
        self._replan()

    def _replan(self) -> None:
        now = self.engine.now
        busy = [h for h in self.hosts if h.then is not None]
        for host in busy:
            host.refresh(now)
        running = self._running()
        moments = [h.period_end() for h in busy]
        for host in running:
            moments.append(now + host.left_ms * self._slowdown(host, len(running)) * len(running))
            moments.append(now + (host.quota_ms - host.used_ms) * len(running))
        if moments:
            self._plan += 1
            self.engine.at(min(moments), self._tick, self._plan)

    def _tick(self, plan: int) -> None:
        if plan != self._plan:
            return
        self._advance()
        for host in self.hosts:
            if host.then is not None and host.left_ms <= EPSILON:
                then, argument = host.then, host.argument
                host.then = host.argument = None
                then(argument)
        self._replan()
