"""``dsd-emu``: one entry point, a subcommand per program. A subcommand's module is imported
only when it runs, so ``dsd-emu simulate`` works where torch and Mininet are not installed."""

from __future__ import annotations

import importlib
import signal
import sys
from importlib.metadata import PackageNotFoundError, version

# subcommand -> (module under emulator.cli, what it does); "trace" has its own table
COMMANDS: dict[str, tuple[str, str]] = {
    "run": ("run", "the main job: a scenario in Mininet, then the simulator beside it (root)"),
    "simulate": ("simulate", "simulate a scenario (DSD-Sim), calibrated from profiles"),
    "fidelity": ("fidelity", "the simulator against the emulator over a matrix of scenarios"),
    "capacity": ("capacity", "edges per target in both worlds: where DSD pays"),
    "plan": ("plan", "capacity planning in the simulator: every mode, network and load"),
    "compare-dsd-sim": ("compare_dsd_sim", "our corrections to DSD-Sim, one at a time"),
    "gpu-times": ("gpu_times", "a GPU device spec's forward-pass times, part by part"),
    "evaluate-awc": ("evaluate_awc", "window policies against the best fixed window"),
    "train-awc": ("train_awc", "train the learned window policy on simulator labels"),
    "chaos": ("chaos", "inject faults into a live run and judge each outcome (root)"),
    "profile": ("profile", "profile a model pair on this machine for the simulator"),
    "summarize": ("summarize", "the metrics table of event logs"),
    "demo": ("demo", "loopback DSD on this machine, without Mininet"),
}
TRACE_COMMANDS: dict[str, tuple[str, str]] = {
    "generate": ("trace_generate", "a synthetic link trace from a named profile"),
    "import": ("trace_import", "a recorded trace (Mahimahi, MONROE, ...) as a canonical CSV"),
    "capture": ("trace_capture", "capture a link trace between two hosts"),
    "stats": ("trace_stats", "a trace's statistics and plot"),
    "validate": ("trace_validate", "replayed drafts against real ones on one scenario"),
}

# the optional parts a subcommand may need, by the module it imports: pyproject's extras
EXTRAS = {
    "torch": "models",
    "transformers": "models",
    "gguf": "models",
    "accelerate": "models",
    "mininet": "net",
    "ray": "plan",
    "simpy": "bench",
}


def project_version() -> str:
    try:
        return version("dsd-emu")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown"


def usage(prefix: str, table: dict[str, tuple[str, str]]) -> str:
    width = max(len(name) for name in table)
    lines = [f"usage: {prefix} COMMAND [ARGS...]   ({prefix} COMMAND --help for its options)", ""]
    lines += [f"  {name:<{width}}  {about}" for name, (_, about) in table.items()]
    if table is COMMANDS:
        lines.append(f"  {'trace':<{width}}  link traces: {', '.join(TRACE_COMMANDS)}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    prefix, table = "dsd-emu", COMMANDS
    if args[:1] == ["trace"]:
        prefix, table, args = "dsd-emu trace", TRACE_COMMANDS, args[1:]
    if not args or args[0] in ("-h", "--help"):
        print(usage(prefix, table))
        return 0 if args else 2
    if args[0] == "--version":
        print(f"dsd-emu {project_version()}")
        return 0
    if args[0] not in table:
        print(f"{prefix}: error: no command {args[0]!r}\n\n{usage(prefix, table)}", file=sys.stderr)
        return 2
    if argv is None:  # a process of its own: Ctrl-C while torch imports ends it quietly (130)
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, _exit_quietly)
    try:
        module = importlib.import_module(f"emulator.cli.{table[args[0]][0]}")
    except ModuleNotFoundError as exc:
        extra = EXTRAS.get((exc.name or "").split(".")[0])
        if extra is None:
            raise
        print(
            f"{prefix} {args[0]}: error: needs {exc.name}, which this install lacks: "
            f"pip install 'dsd-emu[{extra}]' (or bash scripts/bootstrap.sh install)",
            file=sys.stderr,
        )
        return 2
    if argv is None:  # as a Python program would have them
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
    sys.argv = [f"{prefix} {args[0]}", *args[1:]]  # argparse names the program from argv[0]
    return int(module.main(args[1:]) or 0)


def _exit_quietly(signum: int, frame: object) -> None:
    """Until the subcommand takes the signals over (``runtime.process.stop_on_signals``)."""
    raise SystemExit(130)


if __name__ == "__main__":
    raise SystemExit(main())
