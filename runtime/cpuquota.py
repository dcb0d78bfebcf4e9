"""A host's CPU as the emulator limits it: CFS bandwidth control, not a slower processor.

A scenario's ``cpu`` (a share of one core) becomes a cgroup quota: ``share x period`` ms of
CPU in every 100 ms period. A computation runs at full speed until the period's quota is
spent, then waits for the next period, when the quota is refilled (unused quota is not
carried over). A short computation after an idle wait therefore runs at full speed, and a
long one averages the share, with a step wherever it crosses an exhausted period; scaling
every computation by 1 / share, as a slower processor would, misses both (measured on this
machine: one-token drafts under a 0.3 quota took 0.7 of the scaled time).

Period boundaries fall at a fixed phase per host, drawn from the scenario's seed: the
kernel's period timer runs from when the group first ran, unrelated to the workload.

The simulator prices every quota-limited computation with this; an emulated edge
(``runtime.replay_draft``) spends its drafts' time by it too.
"""

from __future__ import annotations

import math

PERIOD_MS = 100.0  # Mininet's CPULimitedHost period (cfs_period_us = 100,000)


class CpuQuota:
    """One host's quota: ``finish`` says when a computation of ``work_ms`` of one full
    core, started at ``start_ms``, ends, and charges it to the periods it runs in."""

    def __init__(self, share: float, phase_ms: float = 0.0, period_ms: float = PERIOD_MS) -> None:
        self.quota_ms = min(share, 1.0) * period_ms
        self.period_ms = period_ms
        self.phase_ms = phase_ms % period_ms
        self._period = -math.inf
        self._used_ms = 0.0

    @property
    def unlimited(self) -> bool:
        return self.quota_ms >= self.period_ms

    def finish(self, start_ms: float, work_ms: float) -> float:
        if self.unlimited or work_ms <= 0.0:
            return start_ms + max(work_ms, 0.0)
        now, left = start_ms, work_ms
        period = math.floor((now - self.phase_ms) / self.period_ms)
        used = self._used_ms if period == self._period else 0.0
        while True:
            period_end = self.phase_ms + (period + 1) * self.period_ms
            runnable = min(self.quota_ms - used, period_end - now)
            if left <= runnable:
                now, used = now + left, used + left
                break
            # the quota runs out (or the period ends) first: wait for the next period
            left -= max(runnable, 0.0)
            now, used, period = period_end, 0.0, period + 1
        self._period, self._used_ms = period, used
        return now
