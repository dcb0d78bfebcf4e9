"""Which shaping backend this kernel supports: try a netem qdisc in a throw-away namespace."""

from __future__ import annotations

import os
import subprocess

BACKENDS = ("netem", "delayline")


def netem_available() -> bool:
    """True when ``tc ... netem`` works (the qdisc is tried on a dummy device in a new netns)."""
    namespace = f"dsdemu-probe-{os.getpid()}"
    try:
        subprocess.run(["ip", "netns", "add", namespace], check=True, capture_output=True)
        subprocess.run(
            ["ip", "-n", namespace, "link", "add", "probe0", "type", "dummy"],
            check=True,
            capture_output=True,
        )
        result = subprocess.run(
            [
                "tc",
                "-n",
                namespace,
                "qdisc",
                "add",
                "dev",
                "probe0",
                "root",
                "netem",
                "delay",
                "1ms",
            ],
            capture_output=True,
        )
        return result.returncode == 0
    except (OSError, subprocess.CalledProcessError):
        return False
    finally:
        subprocess.run(["ip", "netns", "del", namespace], capture_output=True)


def choose_backend(requested: str | None = None) -> tuple[str, str]:
    """(backend, why): the requested one, else netem where it works, else the delay line."""
    if requested:
        if requested not in BACKENDS:
            raise ValueError(f"unknown shaper {requested!r}; choose one of {', '.join(BACKENDS)}")
        if requested == "netem" and not netem_available():
            raise ValueError("--shaper netem: this kernel has no sch_netem (use delayline)")
        return requested, "requested"
    if netem_available():
        return "netem", "probe: netem qdisc works"
    return "delayline", "probe: no sch_netem in this kernel"
