"""DSD-Emu's main job: a scenario in Mininet with real draft and target processes, its traces
replayed on every link, then the simulator's prediction of the same run beside it.

    sudo python scripts/run_topology.py                       # topologies/default.yaml
    sudo python scripts/run_topology.py --edges 2 --requests 1 --max-new-tokens 32
    sudo python scripts/run_topology.py --trace lte.up=mahimahi:ATT.up \\
        --trace lte.down=mahimahi:ATT.down --trace lte.rtt=mecperf:lte-rtt.txt

Results (event logs, metrics.json, PNG plots, report.md) go to results/<time>-<scenario>/.
Started by an interpreter without the project's packages (sudo's own python), it re-runs
itself with the project's .venv.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from project_python import ROOT, use_project_python

if __name__ == "__main__":
    use_project_python(__file__)

import argparse
import json
import time
from datetime import datetime

import yaml
from mininet.log import setLogLevel

from emulator.calibrate import machine_profile
from emulator.cleanup import sweep_before_run
from emulator.fidelity import compare, format_fidelity, headline, headline_errors
from emulator.interrupts import shielded
from emulator.orchestrate import (
    Emulation,
    EmulationError,
    describe_host,
    missing_tools,
)
from emulator.progress import Progress
from emulator.report import write_results
from emulator.scenario import MODE_HELP, Overrides, Scenario, ScenarioError, load_scenario
from emulator.shaping.probe import choose_backend
from emulator.sim.calibration import CalibrationError, probed_unequal_rows, speed_source
from emulator.sim.simulation import SimOptions, Simulation
from runtime.arguments import positive_int, window_policy_spec
from runtime.events import EventLog, read_events
from runtime.metrics import format_table, summarise
from runtime.models import ModelError, prepare_model
from runtime.process import stop_on_signals
from runtime.protocol import EDGE_MODES

DEFAULT_TOPOLOGY = ROOT / "topologies" / "default.yaml"


def trace_option(text: str) -> tuple[str, str]:
    name, sep, spec = text.partition("=")
    if not sep or not name or not spec:
        raise argparse.ArgumentTypeError(f"expected LINK=TRACE (e.g. lte=traces/x.csv), got {text}")
    return name, spec


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument(
        "--topology", default=str(DEFAULT_TOPOLOGY), help="scenario YAML (default: %(default)s)"
    )
    parser.add_argument(
        "--trace",
        type=trace_option,
        action="append",
        default=[],
        metavar="LINK=TRACE",
        help="replace a link's trace: LINK is an edge group or 'wan'; LINK.up, LINK.down and\n"
        "LINK.rtt set one part; TRACE is a canonical CSV or FORMAT:PATH (mahimahi, norway,\n"
        "ucc, wifi-cellular, 5gophers, mecperf); repeatable",
    )
    parser.add_argument(
        "--policy", type=window_policy_spec, help="window policy of every edge, e.g. fixed:6"
    )
    parser.add_argument("--mode", choices=EDGE_MODES, help=MODE_HELP)
    parser.add_argument("--edges", type=positive_int, help="edge hosts in all, over the groups")
    parser.add_argument(
        "--draft",
        help="every group's draft; 'replay': emulated edges replaying each group's own draft\n"
        "(no model in the edge processes; its tokens and times from this machine's profile)",
    )
    parser.add_argument("--requests", type=positive_int, help="requests per edge")
    parser.add_argument("--max-new-tokens", type=positive_int, help="tokens per request")
    parser.add_argument(
        "--shaper", choices=("netem", "delayline"), help="link shaping (default: probe)"
    )
    parser.add_argument("--seed", type=int, help="the scenario's seed (acceptance, jitter, loss)")
    parser.add_argument("--out", default=str(ROOT / "results"), help="parent of the results")
    parser.add_argument("--no-sim", action="store_true", help="skip the simulator's prediction")
    parser.add_argument(
        "--timeout", type=float, default=3600.0, help="longest the workload may run (s)"
    )
    parser.add_argument(
        "--json-summary",
        action="store_true",
        help="last line: JSON with results_dir, backend, emu, sim and error per metric",
    )
    return parser.parse_args(argv)


def preflight(scenario: Scenario, need_sim: bool) -> list[str]:
    """Everything missing, said exactly, before any namespace exists; with nothing missing,
    this machine's profiles for the simulator (measured now if there are none yet)."""
    why = scenario.simulator_only()
    if why:
        return [f"{why}: only the simulator runs it (python scripts/simulate.py {scenario.path})"]
    problems = []
    if os.geteuid() != 0:
        problems.append("Mininet needs root: run it as sudo python scripts/run_topology.py ...")
    tools = missing_tools()
    if tools:
        problems.append(
            f"missing programs: {', '.join(tools)} (bash scripts/bootstrap.sh install adds them)"
        )
    try:
        prepare_model(scenario.cloud.model)
    except ModelError as exc:
        problems.append(f"model: {exc}")
    replayed = any(group.replay for group in scenario.edges)
    if (need_sim or replayed) and not problems:
        for draft in sorted({group.draft for group in scenario.edges}):
            try:
                machine_profile(scenario.cloud.model, draft, scenario.cloud.threads, say=say)
            except CalibrationError as exc:
                problems.append(f"simulator: {exc} (or run with --no-sim)")
    return problems


def replay_profiles(scenario: Scenario) -> dict[str, Path]:
    """Per draft that emulated edges replay, this machine's profile of it (preflight made
    sure it exists)."""
    drafts = {group.draft for group in scenario.edges if group.replay}
    cloud = scenario.cloud
    return {
        draft: Path(machine_profile(cloud.model, draft, cloud.threads, say=say).source)
        for draft in sorted(drafts)
    }


def say(message: str) -> None:
    print(f"run_topology: {message}", flush=True)


def simulate(
    scenario: Scenario, out: Path, cpus: dict[str, str], emu_events: list[dict]
) -> tuple[list[dict], list[str], Simulation]:
    """The simulator's run of the scenario, on the CPUs the emulation pinned its hosts to and
    with the profile scaled to the speed each host's probe measured before the workload."""
    log = EventLog(out / "sim.jsonl", "sim", keep=True, flush_each=False)
    probes = [e for e in emu_events if e["event"] == "speed"]
    simulation = Simulation(scenario, log, SimOptions(cpu_plan=cpus, speed_probes=probes))
    simulation.run()
    log.close()
    speeds = ", ".join(
        f"{host} x{speed:.2f} ({speed_source(probes, host, cpus)})"
        for host, speed in simulation.speeds.items()
    )
    notes = [f"compute times scaled to the hosts' speed probes: {speeds}"] if speeds else []
    target = simulation.targets[0]  # every replica is calibrated alike
    shapes = target.verify_speeds
    if shapes:
        shown = "; ".join(
            f"{batch} row(s) of " + ", ".join(f"{w} x{s:.2f}" for w, s in widths.items())
            for batch, widths in shapes.items()
        )
        notes.append(f"the cloud's verifications scaled by shape (rows of tokens): {shown}")
    if target.prefill_speed is not None:
        notes.append(f"the cloud's prefills scaled x{target.prefill_speed:.2f}")
    if target.unequal_rows != 1.0:
        notes.append(
            f"the cloud's batches of rows of unequal lengths x{target.unequal_rows:.2f} "
            f"({'probed' if probed_unequal_rows(probes, cpus) else 'as profiled'})"
        )
    coupled = {
        "the cloud's": (target.beside, "while an edge computes"),
        "an edge's": (simulation.edges[0].beside, "while the cloud does"),
    }
    shown = [
        f"{who} {', '.join(f'{op} x{ratio:.2f}' for op, ratio in ratios.items())} {when}"
        for who, (ratios, when) in coupled.items()
        if ratios
    ]
    if shown:
        notes.append(f"cross-core interference, as profiled: {'; '.join(shown)}")
    sharing = simulation.edges[0].profile.time_sharing if simulation.cores else {}
    if sharing:
        shown = ", ".join(f"x{ratio:.2f} with {n}" for n, ratio in sorted(sharing.items()))
        notes.append(f"drafts taking turns on a core, as profiled: {shown} computing")
    sharing = simulation.targets[0].profile.target_time_sharing if simulation.target_cores else {}
    if sharing:
        shown = ", ".join(f"x{ratio:.2f} with {n}" for n, ratio in sorted(sharing.items()))
        notes.append(f"replicas taking turns on a core, as profiled: {shown} computing")
    return log.events, simulation.warnings + notes, simulation


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    stop_on_signals()
    try:
        return run(args)
    except KeyboardInterrupt:  # before the network was up, or while writing the results
        print("run_topology: interrupted", file=sys.stderr)
        return 130


def run(args: argparse.Namespace) -> int:
    overrides = Overrides(
        edges=args.edges,
        draft=args.draft,
        policy=args.policy,
        mode=args.mode,
        requests_per_edge=args.requests,
        max_new_tokens=args.max_new_tokens,
        seed=args.seed,
        shaper=args.shaper,
        traces=dict(args.trace),
    )
    try:
        scenario = load_scenario(args.topology, overrides)
        backend, why = choose_backend(scenario.shaper)
    except (ScenarioError, ValueError) as exc:
        print(f"run_topology: error: {exc}", file=sys.stderr)
        return 2
    problems = preflight(scenario, need_sim=not args.no_sim) + sweep_before_run(say)
    if problems:
        for problem in problems:
            print(f"run_topology: error: {problem}", file=sys.stderr)
        return 2
    out = Path(args.out) / f"{datetime.now():%Y%m%d-%H%M%S}-{scenario.name}"
    out.mkdir(parents=True, exist_ok=True)
    started_info = {"command": sys.argv, "status": "running", "started": time.time()}
    (out / "run.json").write_text(json.dumps(started_info, indent=1))

    try:
        (out / "scenario.yaml").write_text(yaml.safe_dump(scenario.raw, sort_keys=False))
        say(
            f"{scenario.name}: {len(scenario.edge_hosts())} edge(s), {scenario.cloud.model} "
            f"target; shaping with {backend} ({why}); results in {out}"
        )
        setLogLevel("error")  # Mininet's own chatter (bridge netfilter notes) is not for users
        emulation = Emulation(
            scenario, out, backend, sys.executable, args.timeout, say, replay_profiles(scenario)
        )
        result = emulation.run(Progress(scenario, out))
    except (EmulationError, OSError) as exc:
        # everything was torn down already; what the processes wrote is kept
        failed = {**started_info, "status": "failed", "error": str(exc)}
        (out / "run.json").write_text(json.dumps(failed, indent=1))
        print(f"run_topology: error: {exc}\nlogs so far are in {out}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # in the moment before the emulation took over the signals
        stopped = {**started_info, "status": "interrupted", "interrupted": True}
        (out / "run.json").write_text(json.dumps(stopped, indent=1))
        print("run_topology: interrupted before the network was up", file=sys.stderr)
        return 130
    with shielded(say):  # the emulated run is over: its results are written whatever comes
        emu_events = read_events(*result.logs)
        emu = summarise(emu_events)
    sim_events: list[dict] = []
    sim = comparison = None
    notes: list[str] = []
    if not result.watches_idle_cgroup:
        notes.append(
            "no idle cgroup (cpu.idle) here: the speed watches ran at SCHED_IDLE alone, "
            "which let them delay a waking target by up to 140 ms where measured"
        )
    speeds: dict[str, float] = {}
    calibration: dict[str, dict] = {}
    interrupted = result.interrupted
    if not args.no_sim and not interrupted:
        say("simulating the same scenario")
        started = time.monotonic()
        try:
            sim_events, warnings, simulation = simulate(scenario, out, result.cpus, emu_events)
            speeds, calibration = simulation.speeds, simulation.calibration()
            notes += warnings
            sim = summarise(sim_events)
            comparison = compare(emu, sim)
            say(f"simulated in {time.monotonic() - started:.1f} s")
        except KeyboardInterrupt:
            interrupted = True
            sim_events = []
            say("interrupted while simulating: writing the emulated results alone")
    run_info = {
        **started_info,
        "status": "interrupted" if interrupted else "complete",
        "backend": backend,
        "backend_reason": why,
        "host": describe_host(),
        "host_settings": result.host_settings,
        "cpus": result.cpus,
        "t_start": result.t_start,
        "wall_s": result.wall_s,
        "replay_lateness_ms_p99": result.replay_lateness_ms_p99,
        "edge_exit_codes": result.edge_exit_codes,
        "interrupted": interrupted,
        # the simulator's compute times relative to the profile, from the hosts' probes
        "sim_speeds": speeds,
        # per draft model, the profile the simulation was calibrated from and its machine
        "sim_profiles": calibration,
    }
    with shielded(say):
        report = write_results(
            out, scenario, run_info, emu_events, sim_events, emu, sim, comparison
        )
    print()
    print(format_table(emu))
    if comparison is not None:
        print("\nfidelity (simulated vs emulated):")
        print(format_fidelity(comparison))
    replayed = emu.get("replayed_rounds")
    if replayed:
        total = replayed["table"] + replayed["fallback"]
        notes.append(
            f"emulated edges (draft: replay): {replayed['table']} of {total} DSD rounds replayed "
            f"the recorded tables, {replayed['fallback']} asked the shared real draft"
        )
    for line in report.warnings + report.notes + notes:
        print(f"run_topology: note: {line}")
    print(f"\nwall time {result.wall_s:.0f} s; results, plots and report.md in {out}")
    if args.json_summary:
        print(
            json.dumps(
                {
                    "results_dir": str(out),
                    "backend": backend,
                    "emu": headline(emu),
                    "sim": headline(sim) if sim else None,
                    "error": headline_errors(comparison) if comparison else None,
                    "replayed_rounds": replayed,
                }
            )
        )
    if interrupted:
        return 130
    return 0 if all(code == 0 for code in result.edge_exit_codes.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
