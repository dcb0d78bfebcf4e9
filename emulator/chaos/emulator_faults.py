"""Faults of the emulator, made for real in Mininet with the tiny model pair: link outages
replayed by the shaper, and SIGINT at random points of the main job (``run_topology.py``).
They need root and Mininet; the runner skips them, saying so, where those are absent."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import yaml

from emulator.chaos.context import ROOT, Chaos, Outcome
from emulator.net.cleanup import find_leftovers
from emulator.run.child_runs import main_job_command
from emulator.traces.csvio import write_trace
from emulator.traces.linktrace import LinkTrace
from runtime.events import read_events

OUTAGE_START_S, OUTAGE_END_S = 2.0, 5.0
OUTAGES = {"cut": ("rate_mbps", 0.0), "lossy": ("loss_pct", 100.0)}
OUTAGE_TOKENS = 600


def outage_trace(path: Path, quantity: str, value: float) -> Path:
    """20 Mbit/s and 5 ms each way, but ``quantity`` set to ``value`` in both directions
    from 2 to 5 s: what recorded traces hold as a dead zone or a tunnel."""
    series = {
        "rate_mbps": np.array([20.0, 20.0, 20.0]),
        "delay_ms": np.array([5.0, 5.0, 5.0]),
        "jitter_ms": np.full(3, np.nan),
        "loss_pct": np.zeros(3),
    }
    series[quantity] = series[quantity].copy()
    series[quantity][1] = value
    times = np.array([0.0, OUTAGE_START_S, OUTAGE_END_S])
    write_trace(LinkTrace(times, 600.0, series, {k: v.copy() for k, v in series.items()}), path)
    return path


def tiny_scenario(
    path: Path, links: dict[str, dict], requests: int, tokens: int, draft: str = "perturbed:0.1"
) -> Path:
    """Edge groups of the tiny random pair (quick to load), one per link."""
    edges = [
        {"name": name, "count": 1, "draft": draft, "cpu": 0.45, "link": link}
        for name, link in links.items()
    ]
    scenario = {
        "name": path.stem,
        "seed": 5,
        "cloud": {"model": "tiny", "cpu": 1.0},
        "edges": edges,
        "workload": {"requests_per_edge": requests, "max_new_tokens": tokens},
    }
    path.write_text(yaml.safe_dump(scenario, sort_keys=False))
    return path


def main_job(scenario: Path, out: Path, *extra: str) -> subprocess.Popen:
    out.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen(
        main_job_command(scenario, out, "--no-sim", *extra),
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def results_dir(out: Path) -> Path | None:
    folders = [p for p in out.iterdir() if p.is_dir()]
    return folders[0] if folders else None


def link_outage(chaos: Chaos) -> Outcome:
    """Two edges whose links die for 3 s (rate 0 on one, 100 % loss on the other), replayed
    by the shaper mid-request: their requests stall, then finish; none is lost or cut."""
    links = {
        name: {"trace": str(outage_trace(chaos.folder / f"{name}.csv", quantity, value))}
        for name, (quantity, value) in OUTAGES.items()
    }
    scenario = tiny_scenario(chaos.folder / "outage.yaml", links, 2, OUTAGE_TOKENS)
    job = main_job(scenario, chaos.folder / "results")
    output, _ = job.communicate(timeout=600)
    (chaos.folder / "run_topology.txt").write_text(output)
    run = results_dir(chaos.folder / "results")
    if job.returncode != 0 or run is None:
        return Outcome(False, {"exit": job.returncode, "output": output[-1500:]})
    t_start = json.loads((run / "run.json").read_text())["t_start"]
    details: dict[str, object] = {}
    survived = True
    for edge in OUTAGES:
        events = read_events(run / f"{edge}1.jsonl")
        requests = [e for e in events if e["event"] == "request"]
        rounds = [e for e in events if e["event"] == "round"]
        stall = max((r["t_recv"] - r["t_send"] for r in rounds), default=0.0)
        crossed = [
            r
            for r in rounds
            if r["t_send"] - t_start < OUTAGE_END_S and r["t_recv"] - t_start > OUTAGE_END_S
        ]
        complete = all("error" not in r and r["output_tokens"] == OUTAGE_TOKENS for r in requests)
        details[edge] = {
            "requests_done": len(requests),
            "longest_round_s": round(stall, 2),
            "rounds_across_the_outage_end": len(crossed),
        }
        survived &= len(requests) == 2 and complete and stall >= 1.5 and bool(crossed)
    applied = {
        (e["link"], e["direction"])
        for e in read_events(run / "links.jsonl")
        if e.get("rate_mbps") == 0.0 or e.get("loss_pct") == 100.0
    }
    details["outage_applied_on"] = sorted(f"{link}.{direction}" for link, direction in applied)
    return Outcome(survived and len(applied) == 4, details)


PHASES = {  # the line after which the signal comes, and how long after it at most (s)
    "setup": (None, 2.5),
    "loading": ("network up", 2.0),
    "workload": ("workload started", 3.0),
}


def sigint(chaos: Chaos, phase: str) -> Outcome:
    """Ctrl-C at a random moment of one phase of the main job (twice in the workload, as
    impatient users press it): it stops with 130 and no traceback, and the results folder
    says it was interrupted and keeps every event written up to then."""
    scenario = tiny_scenario(
        chaos.folder / "interrupted.yaml", {"e": {"constant": {"delay_ms": 10}}}, 3, 2000
    )
    marker, longest = PHASES[phase]
    wait_s = chaos.rng.uniform(0.1, longest)
    job = main_job(scenario, chaos.folder / "results")
    assert job.stdout is not None
    lines: list[str] = []
    started = time.monotonic()
    if marker is not None:
        for line in job.stdout:
            lines.append(line)
            if marker in line:
                break
    time.sleep(wait_s)
    job.send_signal(signal.SIGINT)
    if phase == "workload":
        time.sleep(0.2)
        job.send_signal(signal.SIGINT)
    signalled_after = time.monotonic() - started
    rest, _ = job.communicate(timeout=180)
    output = "".join(lines) + rest
    (chaos.folder / "run_topology.txt").write_text(output)
    run = results_dir(chaos.folder / "results")
    status = None
    if run is not None and (run / "run.json").exists():
        status = json.loads((run / "run.json").read_text()).get("status")
    stopped_cleanly = job.returncode == 130 and "Traceback" not in output
    says_so = status == "interrupted" or (run is None and phase == "setup")
    report = run is not None and (run / "report.md").exists()
    needs_report = phase == "workload"
    return Outcome(
        stopped_cleanly and says_so and (report or not needs_report),
        {
            "signal_after_s": round(signalled_after, 1),
            "exit": job.returncode,
            "status": status,
            "report": report,
            **({"output": output[-1500:]} if not stopped_cleanly else {}),
        },
    )


def main_job_killed(chaos: Chaos) -> Outcome:
    """The main job SIGKILLed mid-workload (nothing of it can clean up): the next run finds
    what it left, removes it (saying so), marks the killed run's results ``killed``, and
    runs; afterwards nothing is left at all."""
    scenario = tiny_scenario(
        chaos.folder / "killed.yaml", {"e": {"constant": {"delay_ms": 10}}}, 3, 2000
    )
    job = main_job(scenario, chaos.folder / "killed")
    assert job.stdout is not None
    for line in job.stdout:
        if "workload started" in line:
            break
    time.sleep(chaos.rng.uniform(0.5, 2.0))
    job.kill()
    job.communicate(timeout=30)
    left = {kind: len(items) for kind, items in find_leftovers().items() if items}
    short = tiny_scenario(chaos.folder / "next.yaml", {"e": {"constant": {"delay_ms": 10}}}, 1, 16)
    following = main_job(short, chaos.folder / "next")
    output, _ = following.communicate(timeout=300)
    (chaos.folder / "run_topology.txt").write_text(output)
    swept = "removed what a killed run left" in output
    killed = results_dir(chaos.folder / "killed")
    status = json.loads((killed / "run.json").read_text())["status"] if killed else None
    return Outcome(
        bool(left) and swept and following.returncode == 0 and status == "killed",
        {
            "left_by_the_killed_run": left,
            "next_run_swept": swept,
            "next_exit": following.returncode,
            "killed_run_status": status,
        },
    )


def child_failed(chaos: Chaos) -> Outcome:
    """An edge process that cannot start (its draft model is not there): the main job stops
    with an error naming it and showing its output, tears everything down, and its results
    say ``failed``."""
    scenario = tiny_scenario(
        chaos.folder / "failing.yaml",
        {"e": {"constant": {"delay_ms": 10}}},
        1,
        16,
        draft=str(chaos.folder / "no-such-model"),
    )
    job = main_job(scenario, chaos.folder / "results")
    output, _ = job.communicate(timeout=300)
    (chaos.folder / "run_topology.txt").write_text(output)
    run = results_dir(chaos.folder / "results")
    status = json.loads((run / "run.json").read_text())["status"] if run else None
    named = "e1 exited" in output and "no-such-model" in output
    return Outcome(
        job.returncode == 1 and named and status == "failed" and "Traceback" not in output,
        {"exit": job.returncode, "error_names_the_process": named, "status": status},
    )
