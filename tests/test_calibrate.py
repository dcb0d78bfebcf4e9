"""Calibration per machine: a fingerprint, profiles cached per fingerprint, measured once.

The tiny pair shows the mechanism in seconds (its own cache folder); the default pair's
profile of this machine is made here too where none is cached yet, so that later tests and
the main job find it.
"""

from __future__ import annotations

import json

import pytest

from emulator.sim.calibration import CalibrationError
from emulator.sim.machine_profiles import cached_machine_profile, machine_profile
from runtime.machine import _cpuinfo, describe, fingerprint, fingerprint_id
from runtime.profile_store import cached_profile_path
from runtime.prompts import DEFAULT_PROMPTS

TINY = ("tiny", "perturbed:0.1")


def test_the_fingerprint_names_the_cpu_its_kernel_flags_and_the_versions() -> None:
    machine = fingerprint(1)
    assert machine["cores"] >= 1 and machine["threads"] == 1
    assert machine["torch"] and machine["transformers"]
    assert (
        fingerprint_id(machine) == fingerprint_id(fingerprint(1)) != fingerprint_id(fingerprint(2))
    )
    model, flags = _cpuinfo(
        "processor\t: 0\nmodel name\t: Some CPU\nflags\t\t: fpu sse4_2 avx2 avx512f "
        "avx512_vnni amx_int8 aes\n\nprocessor\t: 1\nmodel name\t: Other\n"
    )
    assert model == "Some CPU" and flags == ["amx_int8", "avx2", "avx512_vnni", "avx512f", "sse4_2"]
    assert "Some CPU" in describe({**machine, "cpu": "Some CPU", "isa": flags})


@pytest.mark.slow
def test_a_pair_is_profiled_once_per_machine_and_then_taken_from_the_cache(
    tmp_path, monkeypatch
) -> None:
    monkeypatch.setenv("DSD_EMU_CACHE", str(tmp_path))
    said: list[str] = []
    assert cached_machine_profile(*TINY) is None
    made = machine_profile(*TINY, say=said.append)
    path = cached_profile_path(*TINY, fingerprint(1))
    assert (
        made.source == str(path) and path.is_file() and path.parent.parent == tmp_path / "profiles"
    )
    assert len(said) == 1 and "profiling it once" in said[0] and fingerprint_id(made.fingerprint)
    assert made.grid_name == "quick" and made.record()["fingerprint"] == fingerprint(1)
    again = machine_profile(*TINY, say=said.append)
    assert len(said) == 1 and again.source == made.source  # nothing measured the second time
    # a profile whose fingerprint is another machine's is never taken for this one's
    data = json.loads(path.read_text())
    data["conditions"]["fingerprint"]["cpu"] = "another CPU"
    path.write_text(json.dumps(data))
    assert cached_machine_profile(*TINY) is None
    machine_profile(*TINY, say=said.append)
    assert len(said) == 2 and cached_machine_profile(*TINY) is not None


@pytest.mark.slow
def test_a_failed_profiling_is_one_clear_error(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("DSD_EMU_CACHE", str(tmp_path))
    with pytest.raises(CalibrationError, match="profiling tiny / disagree:7 failed"):
        machine_profile("tiny", "disagree:7", say=lambda _: None)


def test_this_machine_has_a_profile_of_the_default_pair(default_pair) -> None:
    """Measured here if missing (the quick grid, a few minutes): what the main job and the
    fidelity suite calibrate the simulator from on this machine."""
    profile = machine_profile("smollm2", "int8", say=print)
    assert profile.fingerprint == fingerprint(1)
    assert profile.verify_ms(4, 5, 128) > profile.verify_ms(1, 1, 64) > 0
    assert 0 < profile.acceptance[0] < 1
    assert len(profile.greedy_matches(DEFAULT_PROMPTS[0])) == 128  # the workload's prompts
