"""DSD-Emu's main job: a scenario in Mininet with real draft and target processes, its traces
replayed on every link, then the simulator's prediction of the same run beside it.

    sudo python scripts/run_topology.py                       # topologies/default.yaml
    dsd-emu run --scenario topologies/capacity.yaml --no-sim  # the same, as root
    sudo python scripts/run_topology.py --edges 2 --requests 1 --max-new-tokens 32
    sudo python scripts/run_topology.py --trace lte.up=mahimahi:ATT.up \\
        --trace lte.down=mahimahi:ATT.down --trace lte.rtt=mecperf:lte-rtt.txt

Results (event logs, metrics.json, PNG plots, report.md) go to results/<time>-<scenario>/.
Started by an interpreter without the project's packages (sudo's own python), it re-runs
itself with the project's .venv.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from emulator.net.shaping.probe import choose_backend
from emulator.paths import ROOT
from emulator.report.fidelity import format_fidelity
from emulator.run.mainjob import RunOptions, RunRefused, run_scenario
from emulator.scenario import MODE_HELP, Overrides, ScenarioError, load_scenario
from runtime.arguments import positive_int, window_policy_spec
from runtime.metrics import format_table
from runtime.process import stop_on_signals
from runtime.protocol import EDGE_MODES

DEFAULT_SCENARIO = ROOT / "topologies" / "default.yaml"


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
        "--scenario",
        "--topology",
        default=str(DEFAULT_SCENARIO),
        help="scenario YAML (default: %(default)s; --topology is its older name)",
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
    parser.add_argument(
        "--outcome", metavar="FILE", help="write that JSON to FILE too (for a parent program)"
    )
    return parser.parse_args(argv)


def say(message: str) -> None:
    print(f"run_topology: {message}", flush=True)


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
        scenario = load_scenario(args.scenario, overrides)
        backend, why = choose_backend(scenario.shaper)
    except (ScenarioError, ValueError) as exc:
        print(f"run_topology: error: {exc}", file=sys.stderr)
        return 2
    options = RunOptions(Path(args.out), not args.no_sim, args.timeout, backend, why)
    try:
        outcome = run_scenario(scenario, options, say)
    except RunRefused as refused:
        for problem in refused.problems:
            print(f"run_topology: error: {problem}", file=sys.stderr)
        return 2
    if args.outcome:
        Path(args.outcome).write_text(json.dumps(outcome.summary()))
    if outcome.emu is None:
        print(f"run_topology: error: {outcome.error}", file=sys.stderr)
        print(f"logs so far are in {outcome.results}", file=sys.stderr)
        return outcome.exit_code()
    print()
    print(format_table(outcome.emu))
    if outcome.comparison is not None:
        print("\nfidelity (simulated vs emulated):")
        print(format_fidelity(outcome.comparison))
    for line in outcome.notes:
        print(f"run_topology: note: {line}")
    print(f"\nwall time {outcome.wall_s:.0f} s; results, plots and report.md in {outcome.results}")
    if args.json_summary:
        print(json.dumps(outcome.summary()))
    return outcome.exit_code()


if __name__ == "__main__":
    raise SystemExit(main())
