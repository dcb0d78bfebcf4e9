"""Remove whatever a crashed or killed emulation left behind.

Mininet's own cleanup (``mn -c``) is not used: it deletes every ``/tmp/*.log`` and
``/tmp/*.out`` on the machine, and every ``*-ethN`` link, whoever made them, and misses Linux
bridges and cgroups. Everything DSD-Emu creates can be found again, and only that is
removed: host shells (``mininet:NAME``; their namespaces and veth ends go with them),
bridges, namespaces and root-side veths start with ``dsd``, delay lines run as ``-m
emulator.net.shaping.delayline`` and speed watches as ``-m runtime.speedwatch``, the delay
lines' sockets live in ``dsdemu-*`` temp folders, and each run's host cgroups (and results
folder, whose ``run.json`` is then marked ``killed``) are listed in a manifest that the run
deletes when it ends cleanly.

    python -m emulator.net.cleanup        # prints what it removed
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import psutil

PREFIX = "dsd"
DELAYLINE_MODULE = "emulator.net.shaping.delayline"
WATCH_MODULE = "runtime.speedwatch"
MANIFEST_DIR = Path(tempfile.gettempdir()) / "dsdemu-runs"
CGROUP_ROOT = Path("/sys/fs/cgroup")
CGROUP_CONTROLLERS = ("cpu", "cpuacct", "cpuset")


def write_manifest(path: Path, cgroups: list[str], results: Path | None) -> None:
    """Record what a run creates that has no findable name (Mininet names cgroups after
    hosts), so that a cleanup after a crash can remove it, and where its results go, so that
    the cleanup can mark them as killed. The run deletes it when done."""
    MANIFEST_DIR.mkdir(parents=True, exist_ok=True)
    record = {"pid": os.getpid(), "cgroups": cgroups, "results": str(results or "")}
    path.write_text(json.dumps(record))


def mark_killed(results: str) -> None:
    """A killed run could not say so itself: its ``run.json`` still says ``running``."""
    run = Path(results) / "run.json"
    try:
        info = json.loads(run.read_text())
    except (OSError, ValueError):
        return
    if info.get("status") == "running":
        info.update(status="killed", interrupted=True)
        run.write_text(json.dumps(info, indent=1))


def _manifests() -> list[tuple[Path, dict, int]]:
    """Every run's manifest and the PID it names (an unreadable one: empty, PID -1, dead)."""
    found = []
    for path in sorted(MANIFEST_DIR.glob("*.json")):
        try:
            manifest = json.loads(path.read_text())
            pid = int(manifest.get("pid", -1))
        except (OSError, ValueError, AttributeError, TypeError):
            manifest, pid = {}, -1
        found.append((path, manifest, pid))
    return found


def _stale_manifests() -> list[tuple[Path, dict]]:
    return [(path, manifest) for path, manifest, pid in _manifests() if not psutil.pid_exists(pid)]


def live_runs() -> list[int]:
    """PIDs of other emulations running now (their manifests name a live process)."""
    return [pid for _, _, pid in _manifests() if pid != os.getpid() and psutil.pid_exists(pid)]


def leftover_cgroups() -> list[str]:
    """Cgroups named in the manifests of dead runs that still exist."""
    names = {name for _, manifest in _stale_manifests() for name in manifest.get("cgroups", [])}
    return sorted(
        n for n in names if any((CGROUP_ROOT / c / n).is_dir() for c in CGROUP_CONTROLLERS)
    )


def remove_cgroups(names: list[str]) -> None:
    """Kill what still runs in the cgroups (processes started in a host), then remove them."""
    for name in names:
        for controller in CGROUP_CONTROLLERS:
            tasks = CGROUP_ROOT / controller / name / "tasks"
            if tasks.is_file():
                for pid in tasks.read_text().split():
                    with contextlib.suppress(ProcessLookupError, ValueError):
                        os.kill(int(pid), signal.SIGKILL)
    time.sleep(0.2)
    for name in names:
        for controller in CGROUP_CONTROLLERS:
            with contextlib.suppress(OSError):
                (CGROUP_ROOT / controller / name).rmdir()


def _run(*command: str) -> str:
    result = subprocess.run(command, capture_output=True, text=True)
    return result.stdout


def leftover_bridges() -> list[str]:
    names = []
    for line in _run("ip", "-o", "link", "show", "type", "bridge").splitlines():
        name = line.split(":")[1].strip().split("@")[0]
        if name.startswith(PREFIX):
            names.append(name)
    return names


def leftover_namespaces() -> list[str]:
    return [
        line.split()[0]
        for line in _run("ip", "netns", "list").splitlines()
        if line.startswith(PREFIX)
    ]


def leftover_processes() -> list[psutil.Process]:
    """Delay lines, speed watches and Mininet host shells (``mininet:NAME`` bash
    processes)."""
    found = []
    for process in psutil.process_iter(["cmdline"]):
        cmdline = process.info["cmdline"] or []
        text = " ".join(cmdline)
        if process.pid == os.getpid():
            continue
        if any(module in text for module in (DELAYLINE_MODULE, WATCH_MODULE)) or any(
            part.startswith("mininet:") for part in cmdline
        ):
            found.append(process)
    return found


def leftover_veths() -> list[str]:
    """Root-namespace interfaces named like Mininet's (``host-ethN``) of our hosts."""
    names = []
    for line in _run("ip", "-o", "link", "show").splitlines():
        name = line.split(":")[1].strip().split("@")[0]
        if "-eth" in name and name.startswith((f"{PREFIX}", "x")):
            names.append(name)
    return names


def find_leftovers() -> dict[str, list[str]]:
    return {
        "processes": [
            f"{p.pid}:{' '.join(p.info['cmdline'] or [])[:60]}" for p in leftover_processes()
        ],
        "bridges": leftover_bridges(),
        "namespaces": leftover_namespaces(),
        "interfaces": leftover_veths(),
        "sockets": [
            p
            for p in glob.glob(os.path.join(tempfile.gettempdir(), "dsdemu-*"))
            if Path(p) != MANIFEST_DIR
        ],
        "cgroups": leftover_cgroups(),
    }


def cleanup() -> dict[str, list[str]]:
    """Remove every leftover; returns what was found (and removed)."""
    found = find_leftovers()
    processes = leftover_processes()
    for process in processes:
        with contextlib.suppress(psutil.Error):
            process.send_signal(signal.SIGTERM)
    _, alive = psutil.wait_procs(processes, timeout=3)
    for process in alive:
        with contextlib.suppress(psutil.Error):
            process.kill()
    for bridge in leftover_bridges():
        _run("ip", "link", "set", bridge, "down")
        _run("ip", "link", "del", bridge)
    for namespace in leftover_namespaces():
        _run("ip", "netns", "del", namespace)
    for interface in leftover_veths():
        _run("ip", "link", "del", interface)
    for folder in found["sockets"]:
        shutil.rmtree(folder, ignore_errors=True)
    remove_cgroups(leftover_cgroups())
    for path, manifest in _stale_manifests():
        if manifest.get("results"):
            mark_killed(manifest["results"])
        if not any(
            (CGROUP_ROOT / c / n).is_dir()
            for c in CGROUP_CONTROLLERS
            for n in manifest.get("cgroups", [])
        ):
            path.unlink(missing_ok=True)
    time.sleep(0.1)
    return found


def sweep_before_run(say: Callable[[str], None]) -> list[str]:
    """Mininet runs one emulation at a time: refuse while another runs (the problem is
    returned), and remove what a killed one left behind, saying what, before building."""
    if os.geteuid() != 0:
        return []
    others = live_runs()
    if others:
        return [f"another emulation is running (pid {', '.join(map(str, others))}); one at a time"]
    for kind, items in cleanup().items():
        if items:
            say(f"removed what a killed run left: {len(items)} {kind}")
    return []


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(
        description="Remove what a crashed or killed emulation left behind: Linux bridges, "
        "delay lines, Mininet host shells, interfaces, namespaces, host cgroups."
    )
    parser.add_argument("--dry-run", action="store_true", help="only list what would be removed")
    args = parser.parse_args(argv)
    if args.dry_run:
        found = {kind: items for kind, items in find_leftovers().items() if items}
        print(f"cleanup: would remove {found}" if found else "cleanup: nothing left behind")
        return 0
    if os.geteuid() != 0:
        print("cleanup: needs root (run with sudo)")
        return 2
    found = cleanup()
    removed = {kind: items for kind, items in found.items() if items}
    if not removed:
        print("cleanup: nothing left behind")
    for kind, items in removed.items():
        print(f"cleanup: removed {len(items)} {kind}: {', '.join(items)}")
    still = {kind: items for kind, items in find_leftovers().items() if items}
    if still:
        print(f"cleanup: could not remove {still}")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
