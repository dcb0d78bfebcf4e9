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
import math
import multiprocessing
import random
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from tqdm import tqdm

from emulator.scenario import load_scenario
from emulator.sim.simulation import SimOptions, Simulation
from runtime.arguments import positive_int
from runtime.estimates import WINDOW_FEATURES, WindowEstimates, window_features
from runtime.events import EventLog
from runtime.metrics import summarise
from runtime.mlp import train_mlp
from runtime.observations import RoundObservation
from runtime.policies import LEARNED_WEIGHTS, Fixed

GAMMAS = tuple(range(1, 11))
EDGE_COUNTS = (1, 1, 1, 2, 4, 8, 16, 32)
RECORDED_EDGES = 2  # edges per run whose features are sampled
SAMPLE_EVERY = 3  # rounds between feature samples
WORLD_RANGES = {
    "delay_ms": "log-uniform 2..400",
    "rate_mbps": "log-uniform 0.5..100",
    "jitter": "uniform 0..30 % of the delay",
    "loss_pct": "0 (70 % of worlds) or uniform 0..2",
    "edges": f"one of {EDGE_COUNTS}",
    "edge_cpu": "uniform 0.2..1.0",
    "workload": "2 requests x 96 tokens per edge, closed loop, max batch 8",
}


def random_world(index: int, seed: int) -> dict[str, Any]:
    rng = random.Random(seed * 100_003 + index)
    delay = math.exp(rng.uniform(math.log(2), math.log(400)))
    link = {
        "rate_mbps": round(math.exp(rng.uniform(math.log(0.5), math.log(100))), 3),
        "delay_ms": round(delay, 2),
        "jitter_ms": round(rng.uniform(0, 0.3) * delay, 2),
        "loss_pct": 0 if rng.random() < 0.7 else round(rng.uniform(0, 2), 2),
    }
    return {
        "name": f"world-{index}",
        "seed": index + 1,
        "cloud": {"model": "smollm2", "cpu": 1.0, "batching": {"max_batch": 8}},
        "edges": [
            {
                "name": "e",
                "count": rng.choice(EDGE_COUNTS),
                "draft": "int8",
                "cpu": round(rng.uniform(0.2, 1.0), 2),
                "link": {"constant": link},
            }
        ],
        "wan": {"constant": {"rate_mbps": 1000, "delay_ms": 2}},
        "workload": {"requests_per_edge": 2, "max_new_tokens": 96},
    }


class RecordingFixed(Fixed):
    """A fixed γ that also keeps the learned policy's estimates and samples its features."""

    def __init__(self, gamma: int, samples: list[np.ndarray]) -> None:
        super().__init__(gamma)
        self.estimates = WindowEstimates()
        self.samples = samples
        self.rounds = 0

    def observe(self, observation: RoundObservation) -> None:
        self.estimates.observe(observation)
        self.rounds += 1
        if self.rounds % SAMPLE_EVERY == 0:
            features = window_features(self.estimates)
            if features is not None:
                self.samples.append(features)


def label_world(world: dict[str, Any]) -> tuple[list[np.ndarray], list[float]]:
    """Feature samples from every fixed-γ run of a world, and each γ's relative throughput."""
    samples: list[np.ndarray] = []
    throughputs = []
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "world.yaml"
        path.write_text(yaml.safe_dump(world))
        scenario = load_scenario(path)
        for gamma in GAMMAS:
            made = 0

            def factory(spec: str, gamma: int = gamma) -> Fixed:
                nonlocal made
                made += 1
                return RecordingFixed(gamma, samples) if made <= RECORDED_EDGES else Fixed(gamma)

            log = EventLog(None, "sim", keep=True)
            Simulation(scenario, log, SimOptions(), policy_factory=factory).run()
            throughputs.append(summarise(log.events)["throughput_tok_s"] or 0.0)
    best = max(throughputs) or 1.0
    return samples, [t / best for t in throughputs]


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
