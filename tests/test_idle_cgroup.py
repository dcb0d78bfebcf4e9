"""The idle cgroup the speed watches run in: made, marked idle, holding a real process, removed;
and swept by the cleanup when a killed run's manifest names it (root, cgroup-v1 cpu)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from emulator.net.idle_cgroup import CPU_CGROUPS, IdleCgroup

needs_cpu_idle = pytest.mark.skipif(
    not (CPU_CGROUPS / "cpu.idle").is_file(),
    reason="needs a cgroup-v1 cpu controller with cpu.idle",
)


@pytest.mark.root
@needs_cpu_idle
def test_an_idle_cgroup_holds_a_process_and_is_removed() -> None:
    group = IdleCgroup(f"dsdidletest{os.getpid()}")
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        assert group.make()
        assert (group.path / "cpu.idle").read_text().strip() == "1"
        group.add(sleeper.pid)
        assert f"{group.path.name}" in Path(f"/proc/{sleeper.pid}/cgroup").read_text()
    finally:
        sleeper.kill()
        sleeper.wait()
        group.remove()
    assert not group.path.exists() and group.made  # it was made: the run's record says so


def test_an_idle_cgroup_that_cannot_be_made_says_so(tmp_path: Path) -> None:
    group = IdleCgroup("dsdidle", root=tmp_path / "no" / "such" / "controller")
    assert not group.make() and not group.made
    group.add(os.getpid())  # nothing to move into: a no-op
    group.remove()
