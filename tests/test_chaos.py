"""The chaos script end to end, and the checks it relies on: the lost-event and leak ledger,
malformed files, and a teardown that a second Ctrl-C cannot cut short."""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import pytest
from cli import run_script

from emulator.chaos.context import Chaos, Outcome
from emulator.chaos.files import fuzz_scenarios, fuzz_traces
from emulator.chaos.ledger import leaks, lost_events, runtime_processes
from emulator.cli.chaos import run_fault
from emulator.net.cleanup import MANIFEST_DIR
from emulator.run.interrupts import shielded
from emulator.traces.importers import import_trace
from emulator.traces.linktrace import TraceError
from runtime.events import EventLog

MININET_FAULTS = {
    "link_outage",
    "sigint_setup",
    "sigint_loading",
    "sigint_workload",
    "main_job_killed",
    "child_failed",
}


@pytest.mark.slow
def test_chaos_survives_every_fault_and_says_so_in_json(tmp_path) -> None:
    result = run_script(
        "chaos.py", "--json", "--fault-limit", "200", "--out", str(tmp_path), timeout=900
    )
    report = json.loads(result.stdout.strip().splitlines()[-1])
    faults = report["faults"]
    assert {"drafter_killed", "target_restarted", "deadline", "protocol_fuzz"} <= set(faults)
    assert {"unauthenticated", "malformed_files"} | MININET_FAULTS <= set(faults)
    ran = {name: f for name, f in faults.items() if "skipped" not in f}
    failed = {name: f for name, f in ran.items() if not f["survived"]}
    assert not failed, json.dumps(failed, indent=1)
    if os.geteuid() == 0:
        assert result.returncode == 0, result.stdout[-3000:]
        assert set(ran) >= MININET_FAULTS and report["survived_all"]
        outage = ran["link_outage"]["details"]
        assert outage["cut"]["longest_round_s"] >= 2.5  # stalled through the 3 s outage
        assert ran["sigint_workload"]["details"]["status"] == "interrupted"
    else:  # a skipped fault is not survived: the run fails, saying which and why
        assert result.returncode == 1, result.stdout[-3000:]
        assert faults["link_outage"] == {"survived": False, "skipped": "needs root (Mininet)"}
        assert report["skipped"] == len(MININET_FAULTS) and not report["survived_all"]
    assert report["server_crashes"] == 0
    assert report["leaked_resources"] == 0
    assert report["lost_events"] == 0
    assert report["unauthenticated_accepted"] == 0
    assert report["fuzz_messages"] >= 10_000
    assert ran["target_restarted"]["details"]["output_equals_greedy"] is True


def test_a_fault_that_hangs_is_stopped_named_and_not_survived(tmp_path) -> None:
    """A hung fault must not hang chaos: past its limit it is stopped (its blocking wait
    interrupted, its process killed), reported with the line it hung on, and not survived."""

    def hangs(chaos: Chaos) -> Outcome:
        subprocess.run(["sleep", "60"])
        return Outcome(True)

    started = time.monotonic()
    result = run_fault(hangs, Chaos(tmp_path / "hang", random.Random(0), None, None), 0.5)
    assert time.monotonic() - started < 30
    assert not result["survived"]
    error = result["details"]["error"]
    hung_here = r"the fault did not finish within 0.5 s: at .+, in tests/test_chaos.py:\d+ hangs"
    assert re.match(hung_here, error), error
    assert not [p for p in psutil.Process().children(recursive=True) if p.name() == "sleep"]


@pytest.mark.root
def test_chaos_sweeps_up_a_killed_run_before_counting_leaks(tmp_path) -> None:
    """What an earlier killed run left (a delay line's socket folder, a dead run's manifest)
    is not the faults' leak: chaos removes it first, as the main job does, and says so."""
    socket_folder = Path(tempfile.mkdtemp(prefix="dsdemu-killed-"))
    MANIFEST_DIR.mkdir(parents=True, exist_ok=True)
    manifest = MANIFEST_DIR / "killed-run.json"
    manifest.write_text(json.dumps({"pid": 999_999_999, "cgroups": [], "results": ""}))
    result = run_script("chaos.py", "--json", "--only", "unauthenticated", "--out", str(tmp_path))
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["faults"]["unauthenticated"]["survived"], result.stdout[-2000:]
    assert report["leaked_resources"] == 0
    assert "chaos: removed what a killed run left: 1 sockets" in result.stdout
    assert not socket_folder.exists() and not manifest.exists()


def test_events_missing_from_a_log_are_counted_as_lost(tmp_path) -> None:
    path = tmp_path / "edge.jsonl"
    log = EventLog(path, "e1")
    for index in range(3):
        log.write("round", round=index)
    log.write("request", output_tokens=3)
    log.write("process", events=log.written, requests_started=2)
    log.close()
    assert lost_events([path]) == (1, [f"{path.name}: e1 wrote more than the log holds (1)"])
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines[:1] + lines[2:]) + "\n")  # a round vanished as well
    assert lost_events([path])[0] == 2


def test_a_killed_processs_log_is_held_to_itself(tmp_path) -> None:
    """SIGKILL leaves no ``process`` record to count against: the rounds of each session
    must then run without a gap."""
    path = tmp_path / "victim.jsonl"
    log = EventLog(path, "victim")
    for index in (0, 1, 2, 4):
        log.write("round", session="s1", round=index)
    log.close()
    lost, notes = lost_events([path])
    assert lost == 1 and "no process record" in notes[0]
    path.write_text("\n".join(path.read_text().splitlines()[:3]) + "\n")  # cut after round 2
    assert lost_events([path]) == (0, [])


def test_a_runtime_process_left_running_is_a_leak() -> None:
    before = runtime_processes()
    stray = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "runtime.draft"])
    try:
        time.sleep(0.2)
        assert any(
            line.startswith(f"{stray.pid}:")
            for line in leaks(before, root=False)["runtime processes"]
        )
    finally:
        stray.kill()
        stray.wait()
    assert not leaks(before, root=False)


def test_teardown_notes_signals_instead_of_being_cut_short() -> None:
    said: list[str] = []
    before = signal.getsignal(signal.SIGINT)
    with shielded(said.append) as received:
        os.kill(os.getpid(), signal.SIGINT)
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.05)
    assert received == [signal.SIGINT, signal.SIGTERM]
    assert said == ["still tearing down; one moment"]
    assert signal.getsignal(signal.SIGINT) is before


def test_malformed_traces_and_scenarios_are_refused_never_crash(tmp_path) -> None:
    traces = fuzz_traces(tmp_path, 80, seed=11)
    scenarios = fuzz_scenarios(tmp_path, 200, seed=11)
    assert not traces.crashes and not scenarios.crashes
    assert traces.refused > traces.files // 4 and scenarios.refused > scenarios.files // 2


@pytest.mark.parametrize(
    ("fmt", "text", "message"),
    [
        ("mahimahi", "1\n2\n99999999999999999999\n", "past a day"),
        ("mecperf", "2020-01-01 10:00:00.0_30,2026-01-01 10:00:01.0_31\n", "span 2192.0 days"),
        ("mecperf", "2020-01-01 10:00:00.0_30,2020-01-01 10:00:01.0_inf\n", "is not finite"),
    ],
)
def test_wild_values_in_recorded_traces_are_refused(tmp_path, fmt, text, message) -> None:
    path = tmp_path / ("trace.down" if fmt == "mahimahi" else "trace.txt")
    path.write_text(text)
    with pytest.raises(TraceError, match=message):
        import_trace(fmt, path)
