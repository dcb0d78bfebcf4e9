"""Thread counts, CPU pinning and resource accounting of one runtime process.

Two torch processes with 2 threads each on 2 cores slow each other ~3x, so every process
sets its thread count and affinity deliberately and records both in its event log. Torch
is imported only where threads are set: an emulated edge (``runtime.replay_draft``) never
loads it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
from typing import Any

import psutil


def parse_cpus(spec: str | None) -> list[int] | None:
    """``"0,2-3"`` -> [0, 2, 3]; None or empty leaves the affinity alone."""
    if not spec:
        return None
    cpus: list[int] = []
    for part in spec.split(","):
        first, _, last = part.partition("-")
        try:
            cpus.extend(range(int(first), int(last or first) + 1))
        except ValueError as exc:
            raise ValueError(f"bad CPU list {spec!r}: expected e.g. 0,2-3") from exc
    count = os.cpu_count() or 1
    missing = sorted(c for c in cpus if not 0 <= c < count)
    if missing:
        raise ValueError(f"CPUs {missing} do not exist on this machine (0..{count - 1})")
    return cpus


def pin(cpus: list[int] | None) -> None:
    """Pin the process to ``cpus`` (None leaves the affinity alone)."""
    if cpus is not None:
        try:
            os.sched_setaffinity(0, cpus)
        except OSError as exc:
            raise ValueError(f"cannot pin to CPUs {cpus}: {exc.strerror}") from exc


def configure(threads: int, cpus: list[int] | None) -> None:
    """Pin the process and fix torch's intra-op threads (and one inter-op thread)."""
    import torch

    pin(cpus)
    torch.set_num_threads(max(1, threads))
    if torch.get_num_interop_threads() != 1:
        # Fixed for good once parallel work has started in this process; keep what it is then.
        with contextlib.suppress(RuntimeError):
            torch.set_num_interop_threads(1)


def resource_report(role: str) -> dict[str, Any]:
    """CPU time, peak memory, threads and affinity, for the ``process`` event."""
    proc = psutil.Process()
    cpu = proc.cpu_times()
    peak_kb = peak_rss_kb()
    return {
        "role": role,
        "pid": os.getpid(),
        "cpu_user_s": cpu.user,
        "cpu_system_s": cpu.system,
        "peak_rss_mb": peak_kb / 1024.0 if peak_kb else proc.memory_info().rss / 2**20,
        "threads": proc.num_threads(),
        "python_threads": threading.active_count(),
        "torch_threads": torch.get_num_threads() if (torch := sys.modules.get("torch")) else None,
        "affinity": sorted(os.sched_getaffinity(0)),
    }


def peak_rss_kb() -> int | None:
    """This process's peak resident memory: ``VmHWM``, which starts afresh at ``exec``
    (``ru_maxrss`` keeps the high-water mark of the process that forked it, e.g. a large
    orchestrator's); ``ru_maxrss`` where there is no /proc."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    try:
        import resource

        return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
    except (ImportError, OSError):
        return None


def stop_child(process: subprocess.Popen, grace_s: float = 10.0) -> None:
    """SIGTERM a child, SIGKILL it if it has not exited after ``grace_s``, and reap it."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def stop_on_signals() -> None:
    """SIGINT and SIGTERM both raise KeyboardInterrupt, so that a process stopped by either
    finishes what it logs; also when the shell that started it ignores SIGINT, as shells do
    for background jobs (and the ignoring would be inherited)."""

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, interrupt)
    signal.signal(signal.SIGTERM, interrupt)
