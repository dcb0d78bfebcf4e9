"""Train the learned window policy (``learned``, the DSD paper's WC-DNN) on simulator labels.

    python scripts/train_awc.py [--worlds 400] [--out runtime/awc_learned.json] [--jobs 2]

For each of many random simulated worlds (a constant access link of random delay, rate,
jitter and loss; 1 to 32 edges; a drafter of random speed; the bundled pair's profile),
every fixed γ in 1..10 is simulated. The world's label is each γ's throughput relative to
the best of them: the oracle's answer in hindsight. The inputs are the estimates the
policy itself keeps (``runtime.policies.window_features``), sampled along every run, so the
network learns to recognise a world from what an edge sees. A fifth of the worlds is held
out and reported. The recorded traces that ``evaluate_awc.py`` uses are never trained on.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import statistics
import sys
from pathlib import Path

import numpy as np
from tqdm import tqdm

from emulator.experiments.awc_training import GAMMAS, WORLD_RANGES, label_world, random_world
from runtime.arguments import positive_int
from runtime.estimates import WINDOW_FEATURES
from runtime.mlp import train_mlp
from runtime.policies import LEARNED_WEIGHTS


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--worlds", type=positive_int, default=400, help="simulated worlds")
    parser.add_argument("--epochs", type=positive_int, default=100)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--jobs", type=positive_int, default=2, help="worlds simulated at once")
    parser.add_argument("--out", default=str(LEARNED_WEIGHTS), help="weights file to write")
    args = parser.parse_args(argv)
    if not Path(args.out).resolve().parent.is_dir():
        print(f"train_awc: error: no folder for {args.out}", file=sys.stderr)
        return 2
    worlds = [random_world(i, args.seed) for i in range(args.worlds)]
    with multiprocessing.Pool(args.jobs) as pool:
        labelled = list(
            tqdm(
                pool.imap(label_world, worlds),
                total=len(worlds),
                desc="simulating worlds",
                unit="world",
                file=sys.stderr,
            )
        )
    held_out = set(range(0, len(worlds), 5))
    train_x, train_y = [], []
    for index, (samples, label) in enumerate(labelled):
        if index not in held_out:
            train_x += samples
            train_y += [label] * len(samples)
    if not train_x:
        print("train_awc: error: no samples; simulate more worlds", file=sys.stderr)
        return 2
    network, losses = train_mlp(
        np.array(train_x), np.array(train_y), epochs=args.epochs, seed=args.seed
    )
    # held-out worlds: the relative throughput of the γ the network picks, sample by sample
    picked = [
        label[int(np.argmax(network(sample)))]
        for index, (samples, label) in enumerate(labelled)
        if index in held_out
        for sample in samples
    ]
    report = {
        "train_samples": len(train_x),
        "final_loss": losses[-1],
        "held_out_worlds": len(held_out),
        "held_out_relative_throughput_mean": statistics.mean(picked) if picked else None,
        "held_out_relative_throughput_p10": float(np.percentile(picked, 10)) if picked else None,
    }
    document = {
        "features": list(WINDOW_FEATURES),
        "gammas": list(GAMMAS),
        "network": network.to_json(),
        "training": {
            "command": " ".join(["python scripts/train_awc.py", *(argv or sys.argv[1:])]),
            "worlds": args.worlds,
            "world_ranges": WORLD_RANGES,
            "labels": "throughput of each fixed γ relative to the best, simulated",
            "profile": "profiles/smollm2-int8.json",
            "epochs": args.epochs,
            "seed": args.seed,
            **report,
        },
    }
    Path(args.out).write_text(json.dumps(document, separators=(",", ":")))
    for key, value in report.items():
        print(f"{key:>36}: {value:.4g}" if isinstance(value, float) else f"{key:>36}: {value}")
    print(f"weights written to {args.out}")
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
