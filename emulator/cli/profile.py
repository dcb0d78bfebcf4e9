"""Profile a model pair on this machine for the simulator; by default into this machine's
profile cache (``DSD_EMU_CACHE/profiles/<fingerprint>/<target>-<draft>.json``), where every
tool that simulates a run of this machine looks.

    python scripts/profile_models.py                 # the bundled default pair, full grid
    python scripts/profile_models.py --quick         # what the tools make by themselves
    python scripts/profile_models.py --tiny -o /tmp/tiny.json
    python scripts/profile_models.py --target smollm2 --draft int8 --threads 1 --cpus 1

Use the thread count and CPU pinning the emulator gives the processes (1 thread each, the
target on the last CPU): the profile records them and this machine's fingerprint, and the
simulator is only as right as this match. ``profiles/`` holds the committed reference
profiles (``-o profiles/NAME.json``), measured on the machine each one names.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from runtime import interference, timesharing
from runtime.models import ModelError, load_model, make_draft
from runtime.process import configure, parse_cpus
from runtime.profile import profile_pair
from runtime.profile_store import cached_profile_path, save_profile
from runtime.prompts import DEFAULT_PROMPTS

FULL_GRID = {
    "contexts": [64, 256, 512],
    "prompt_lengths": [16, 64, 256],
    "batches": [1, 2, 4, 8],
    "tokens": [1, 2, 3, 4, 5, 9],
}
# the points the simulator interpolates between for the suite's and the default scenario's
# runs (prompts of 30-60 tokens, contexts up to ~250, one to three rows, γ up to 8) and the
# capacity sweep's (up to 8 rows); rows of 2 to 5 tokens are most of what they verify, and a
# row of 2 costs nearly what one of 3 does (one token takes another kernel path), so those
# widths are points of their own; so is a batch of 3, which costs more than one of 4 here
# (3 one-token rows 120 ms, 4 rows 101)
QUICK_GRID = {
    "contexts": [64, 256],
    "prompt_lengths": [16, 64],
    "batches": [1, 2, 3, 4, 8],
    "tokens": [1, 2, 3, 4, 5, 9],
}
TINY_GRID = {
    "contexts": [32, 128],
    "prompt_lengths": [16, 64],
    "batches": [1, 4],
    "tokens": [1, 5],
}
BAR = 24


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--target", default="smollm2", help="target model spec")
    parser.add_argument("--draft", default="int8", help="draft spec")
    parser.add_argument("--tiny", action="store_true", help="the tiny random pair, small grid")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="the grid points the simulator interpolates for the bundled scenarios, 3 repeats "
        "(a few minutes; what the tools make when this machine has no profile)",
    )
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--cpus", help="pin to these CPUs, e.g. 1")
    parser.add_argument("--gamma", type=int, default=8, help="window for the acceptance runs")
    parser.add_argument("--tokens", type=int, default=128, help="tokens per acceptance prompt")
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats per point")
    parser.add_argument("-o", "--output", help="default: this machine's profile cache")
    args = parser.parse_args(argv)
    if args.tiny:
        args.target, args.draft = "tiny", "perturbed:0.1"
    grid_name = "tiny" if args.tiny else "quick" if args.quick else "full"
    grid = {"tiny": TINY_GRID, "quick": QUICK_GRID, "full": FULL_GRID}[grid_name]
    repeats = min(args.repeats, 3) if args.quick else args.repeats
    started = time.monotonic()

    def say(step: str, done: int | None = None, total: int | None = None) -> None:
        bar, end = "", "\n"
        if done is not None and total:
            filled = round(BAR * done / total)
            bar = f"[{'#' * filled}{'.' * (BAR - filled)}] {done * 100 // total:3d}%  "
            if sys.stderr.isatty() and done < total:  # one line that fills up
                end = "\x1b[K\r"
        line = f"profile: {bar}{time.monotonic() - started:6.1f} s  {step}"
        print(line, file=sys.stderr, end=end, flush=True)

    try:
        cpus = parse_cpus(args.cpus)
        configure(args.threads, cpus)
        target = load_model(args.target)
        draft = make_draft(args.draft, target)
    except (ModelError, ValueError) as exc:
        print(f"profile: error: {exc}", file=sys.stderr)
        return 2
    conditions = {
        "threads": args.threads,
        "cpus": args.cpus,
        "grid": grid,
        "grid_name": grid_name,
        "repeats": repeats,
        "acceptance_prompts": len(DEFAULT_PROMPTS),
        "acceptance_tokens": args.tokens,
    }
    profile = profile_pair(
        target,
        draft,
        list(DEFAULT_PROMPTS),
        grid,
        args.gamma,
        args.tokens,
        repeats,
        conditions,
        say,
        acceptance_cpus=set(range(os.cpu_count() or 1)),
    )
    own = set(cpus) if cpus else {(os.cpu_count() or 1) - 1}  # the acceptance used every CPU
    say("cross-core interference: each op alone and beside the other role's work")
    try:
        measured = interference.measure_beside_another_cpu(
            target,
            draft,
            (args.target, args.draft),
            own,
            lambda done, total: say("cross-core interference", done, total),
        )
    except RuntimeError as exc:
        print(f"profile: error: {exc}", file=sys.stderr)
        return 1
    if measured is None:
        say("cross-core interference: not measured (one CPU)")
    else:
        profile["interference"] = measured
    # the draft's as ``time_sharing`` (the key older profiles have), the target's beside it
    for key, role, model, beside in (
        ("time_sharing", "draft", draft, "other drafters"),
        ("target_time_sharing", "target", target, "another replica"),
    ):
        op = timesharing.OPS[role]
        say(f"time-sharing: {op} alone and beside {beside} on its CPU")
        try:
            profile[key] = timesharing.measure_time_sharing(
                model,
                role,
                (args.target, args.draft),
                min(own),
                lambda done, total, op=op: say(f"time-sharing ({op})", done, total),
            )
        except RuntimeError as exc:
            print(f"profile: error: {exc}", file=sys.stderr)
            return 1
    output = args.output or str(
        cached_profile_path(args.target, args.draft, profile["conditions"]["fingerprint"])
    )
    save_profile(profile, output)
    accepted = profile["acceptance"]
    say(f"wrote {output}: acceptance {accepted['overall']:.2f} over {accepted['rounds']} rounds")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
