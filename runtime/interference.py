"""Cross-core interference: how much slower one role computes while the other computes on
another CPU of the same machine.

The emulator pins the target to one CPU and the edges to the others. On a small virtual
machine those CPUs may share a physical core, its caches or its memory bandwidth, so a
verification can run slower while edges draft, and a draft while the target verifies; each
op alone, as the profile times it, misses that. This times the ops
the simulator prices beside a *neighbour* process pinned to another CPU and doing the other
role's work, paused (SIGSTOP) and resumed (SIGCONT) in turn, so that both conditions meet
the machine's drift alike. The ratio is CPU time beside over CPU time alone, per alternation;
it is *resolved* when the alternations' ratios fall on one side of 1 as seldom by chance as
one time in 16 (with five alternations: all five), and only a resolved ratio is used: a
virtual machine's speed wanders by more than a small interference between two back-to-back
timings.

    python -m runtime.interference --work draft --cpus 0    # a neighbour, until stopped
"""

from __future__ import annotations

import argparse
import math
import os
import select
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from runtime.models import LoadedModel, ModelError, load_role
from runtime.process import stop_child, stop_on_signals
from runtime.profile import PROBE, draft_round_cpu_ms, verify_cpu_ms

ROOT = Path(__file__).resolve().parents[1]
REPEATS = 3  # timed repeats per measurement
ALTERNATIONS = 5  # alone / beside pairs per op
RESOLVED_P = 1 / 16  # a ratio is used where chance puts its alternations so far apart this seldom
READY = "neighbour: ready"
LOAD_TIMEOUT_S = 300.0
SETTLE_S = 0.05  # after a pause or a resume, before timing


def draft_round_ms(draft: LoadedModel) -> float:
    """CPU time of a draft round at the probe's context: the op most of a draft's time goes to."""
    return draft_round_cpu_ms(draft, PROBE["context"], REPEATS)


def _verify_ms(target: LoadedModel) -> float:
    return verify_cpu_ms(target, REPEATS)


def ops(target: LoadedModel, draft: LoadedModel) -> dict[str, dict[str, Callable[[], float]]]:
    """Per role, the op most of its time goes to, a measurement in CPU ms; a role's neighbour
    does the other role's work. (Prefills beside the other role measured x0.94-1.01 on the
    development machine and are not measured.)"""
    return {
        "target": {"verify": lambda: _verify_ms(target)},
        "draft": {"step": lambda: draft_round_ms(draft)},
    }


def neighbour_loop(role: str, target: LoadedModel, draft: LoadedModel) -> None:
    """Compute ``role``'s work until stopped, or until the process that started it is gone
    (a profiler killed outright leaves no neighbour computing): draft rounds, or
    verifications."""
    step = (lambda: draft_round_ms(draft)) if role == "draft" else (lambda: _verify_ms(target))
    parent = os.getppid()
    step()
    print(READY, flush=True)
    while os.getppid() == parent:
        step()


def other_cpu(own: set[int]) -> int | None:
    """A CPU of this machine the measuring process is not pinned to, or None (one CPU)."""
    others = sorted(set(range(os.cpu_count() or 1)) - own)
    return others[0] if others else None


class Neighbour:
    """A neighbour process of one role pinned to ``cpu``; ``pause``/``resume`` stop and
    continue its work without its model being loaded again."""

    def __init__(self, role: str, target_spec: str, draft_spec: str, cpu: int) -> None:
        command = [
            *(sys.executable, "-m", "runtime.interference", "--work", role),
            *("--target", target_spec, "--draft", draft_spec, "--cpus", str(cpu)),
        ]
        self.process = subprocess.Popen(
            command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        output = self._wait_ready()
        if output is not None:
            stop_child(self.process)
            raise RuntimeError(f"the {role} neighbour did not start: {output.strip()[-300:]}")

    def _wait_ready(self) -> str | None:
        """None once the neighbour says it is ready; else (it exited, or took longer than
        ``LOAD_TIMEOUT_S``) what it printed."""
        assert self.process.stdout is not None
        fd, seen = self.process.stdout.fileno(), b""
        deadline = time.monotonic() + LOAD_TIMEOUT_S
        while (left := deadline - time.monotonic()) > 0:
            readable, _, _ = select.select([fd], [], [], left)
            chunk = os.read(fd, 4096) if readable else b""
            if not chunk:
                break
            seen += chunk
            if READY.encode() in seen:
                return None
        return seen.decode(errors="replace")

    def pause(self) -> None:
        self.process.send_signal(signal.SIGSTOP)
        time.sleep(SETTLE_S)

    def resume(self) -> None:
        self.process.send_signal(signal.SIGCONT)
        time.sleep(SETTLE_S)

    def stop(self) -> None:
        self.process.send_signal(signal.SIGCONT)
        stop_child(self.process)


def resolved(ratios: list[float]) -> bool:
    """Whether the ratios fall on one side of 1 more often than chance would put them there:
    a two-sided sign test at ``RESOLVED_P`` (with five alternations, all five on one side)."""
    above, below = sum(r > 1 for r in ratios), sum(r < 1 for r in ratios)
    n, k = above + below, max(above, below)
    tail = sum(math.comb(n, i) for i in range(k, n + 1)) / 2**n if n else 1.0
    return 2 * tail <= RESOLVED_P


def ratio_record(alone: list[float], beside: list[float]) -> dict[str, Any]:
    """Paired timings of one op (alternation by alternation) as a profile keeps them: the
    medians, each alternation's ratio, their median and whether it is resolved."""
    ratios = [b / a for a, b in zip(alone, beside, strict=True)]
    return {
        "alone_ms": statistics.median(alone),
        "beside_ms": statistics.median(beside),
        "ratios": ratios,
        "ratio": statistics.median(ratios),
        "resolved": resolved(ratios),
    }


def measure(
    target: LoadedModel,
    draft: LoadedModel,
    specs: tuple[str, str],
    cpu: int,
    tick: Callable[[], None] = lambda: None,
) -> dict[str, Any]:
    """Per role and op: CPU ms alone and beside a neighbour of the other role on ``cpu``
    (medians of ``ALTERNATIONS`` alternations), each alternation's ratio, their median and
    whether it is resolved. ``tick`` after each op."""
    result: dict[str, Any] = {"neighbour_cpu": cpu, "alternations": ALTERNATIONS}
    other = {"target": "draft", "draft": "target"}
    for role, measured in ops(target, draft).items():
        neighbour = Neighbour(other[role], *specs, cpu)
        try:
            timed: dict[str, Any] = {}
            for op, time_op in measured.items():
                alone, beside = [], []
                for _ in range(ALTERNATIONS):
                    neighbour.pause()
                    alone.append(time_op())
                    neighbour.resume()
                    beside.append(time_op())
                timed[op] = ratio_record(alone, beside)
                tick()
        finally:
            neighbour.stop()
        result[role] = {"beside": f"{other[role]} work on CPU {cpu}", **timed}
    return result


def measure_beside_another_cpu(
    target: LoadedModel,
    draft: LoadedModel,
    specs: tuple[str, str],
    own: set[int],
    progress: Callable[[int, int], None] = lambda done, total: None,
) -> dict[str, Any] | None:
    """``measure`` with this process pinned to ``own`` and the neighbour on another CPU;
    None on a machine with no other CPU. ``progress(done, total)`` after each op."""
    cpu = other_cpu(own)
    if cpu is None:
        return None
    os.sched_setaffinity(0, own)
    total = sum(len(measured) for measured in ops(target, draft).values())
    done = iter(range(1, total + 1))
    return measure(target, draft, specs, cpu, tick=lambda: progress(next(done), total))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="a neighbour: one role's work until stopped")
    parser.add_argument("--work", choices=("draft", "target"), required=True)
    parser.add_argument("--target", default="smollm2")
    parser.add_argument("--draft", default="int8")
    parser.add_argument("--cpus", type=int, required=True)
    args = parser.parse_args(argv)
    stop_on_signals()
    try:
        target, draft = load_role(args.work, args.target, args.draft, args.cpus)
        neighbour_loop(args.work, target, draft)
    except (ModelError, ValueError) as exc:
        print(f"neighbour: error: {exc}", flush=True)
        return 2
    except KeyboardInterrupt:
        return 0
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
