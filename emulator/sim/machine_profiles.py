"""This machine's profile of a model pair, measured once and cached per machine fingerprint.

A profile holds compute times, and compute times are the machine's own: one measured on
another CPU (other kernels, other instruction sets) does not carry over by one speed ratio,
since prefill, single-token steps and batched verification scale differently. So every
tool that simulates a run of this machine asks here first; the first time, the pair is
profiled (the quick grid, a few minutes) in a child process pinned as the emulator pins the
target, and kept under ``DSD_EMU_CACHE/profiles/<fingerprint>/``. The committed reference
profiles (``emulator/sim/reference_profiles/``) stay as the documented reference of the
machine that made them, used here only where no model can run (an install without the
``models`` extra), and then said.
"""

from __future__ import annotations

import fcntl
import importlib.util
import os
import subprocess
import sys
from collections.abc import Callable

from emulator.sim.calibration import (
    CalibrationError,
    PairProfile,
    read_profile,
    reference_profile,
)
from runtime.machine import describe, fingerprint, fingerprint_id
from runtime.profile_store import PROFILE_VERSION, cached_profile_path

# measured: 3 min 0 s on one development machine, 6 min 45 s and 7 min 9 s on another
QUICK_MINUTES = "5 to 15"


def cached_machine_profile(target: str, draft: str, threads: int = 1) -> PairProfile | None:
    """This machine's cached profile of the pair, or None where there is none that matches
    (another machine's fingerprint, or a profile of an older version)."""
    machine = fingerprint(threads)
    path = cached_profile_path(target, draft, machine)
    if not path.is_file():
        return None
    try:
        profile = read_profile(path)
    except CalibrationError:
        return None
    current = profile.version == PROFILE_VERSION  # an older one lacks what is measured now
    return profile if current and profile.fingerprint == machine else None


def _reference_instead(target: str, draft: str, say: Callable[[str], None]) -> PairProfile:
    """Where this install cannot run a model, the committed reference profile, named as
    another machine's: its times are that machine's, not this one's."""
    profile = reference_profile(target, draft)
    say(
        f"no torch here to profile {target} / {draft} on this machine: using the committed "
        f"reference profile {profile.source} (another machine's compute times, measured "
        f"{profile.data['conditions'].get('measured', 'earlier')}); pip install "
        "'dsd-emu[models]' to measure this one"
    )
    return profile


def profile_cpu() -> str:
    """The CPU the emulator gives the target (the last one): where the profile is measured."""
    cpus = sorted(os.sched_getaffinity(0))
    return str(cpus[-1])


def machine_profile(
    target: str,
    draft: str,
    threads: int = 1,
    say: Callable[[str], None] = print,
) -> PairProfile:
    """The pair's profile for this machine: cached, or measured now (saying so, with the
    profiler's progress on stderr). Two callers at once measure it once (a file lock)."""
    machine = fingerprint(threads)
    path = cached_profile_path(target, draft, machine)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(f"{path.name}.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        found = cached_machine_profile(target, draft, threads)
        if found is not None:
            return found
        if importlib.util.find_spec("torch") is None:
            return _reference_instead(target, draft, say)
        say(
            f"no profile (version {PROFILE_VERSION}) of {target} / {draft} was measured on this "
            f"machine ({describe(machine)}; "
            f"fingerprint {fingerprint_id(machine)}): profiling it once (quick grid, "
            f"{QUICK_MINUTES} minutes), kept in {path}"
        )
        command = [
            sys.executable,
            "-m",
            "emulator.cli.main",
            "profile",
            "--quick",
            "--target",
            target,
            "--draft",
            draft,
            "--threads",
            str(threads),
            "--cpus",
            profile_cpu(),
            "-o",
            str(path),
        ]
        done = subprocess.run(command, stdout=subprocess.DEVNULL, check=False)
        if done.returncode != 0:
            raise CalibrationError(
                f"profiling {target} / {draft} failed (exit {done.returncode}); run "
                f"{' '.join(command[1:])} to see why"
            )
        return read_profile(path)
