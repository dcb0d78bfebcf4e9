"""A cgroup whose processes run only when nothing else would: where the speed watches run.

``SCHED_IDLE`` alone is not enough beside Mininet's hosts: a task at that policy in the root
cgroup competes with each host's cgroup as a whole, and there the kernel let a running
watch delay a waking target by up to 140 ms (measured: a forward loop in a cgroup beside a
watch). A cgroup marked ``cpu.idle`` is idle as a group, and the delays fell to a tick
(4-8 ms at most, 0 at the median).
"""

from __future__ import annotations

import contextlib
from pathlib import Path

CPU_CGROUPS = Path("/sys/fs/cgroup/cpu")


class IdleCgroup:
    """``name`` under the cpu controller, marked idle; ``add`` moves a process into it.
    ``made`` says whether it was (and stays so once removed, for the run's record)."""

    def __init__(self, name: str, root: Path = CPU_CGROUPS) -> None:
        self.path = root / name
        self.made = False

    def make(self) -> bool:
        """Create it; False where this kernel or machine has no ``cpu.idle`` (v1 cpu
        controller) or the caller may not create cgroups."""
        try:
            self.path.mkdir(exist_ok=True)
            (self.path / "cpu.idle").write_text("1")
        except OSError:
            self.remove()
            return False
        self.made = True
        return True

    def add(self, pid: int) -> None:
        if self.made:
            (self.path / "cgroup.procs").write_text(str(pid))

    def remove(self) -> None:
        """Remove it (its processes must have exited; a killed run's is swept by
        ``emulator.net.cleanup``, which the run's manifest tells of it)."""
        with contextlib.suppress(OSError):
            self.path.rmdir()
