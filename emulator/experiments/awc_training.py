"""The learned window policy's training worlds and labels: random simulated worlds (a
constant access link of random delay, rate, jitter and loss; 1 to 32 edges; a drafter of
random speed), each labelled by every fixed γ's throughput relative to the best (the
oracle's answer in hindsight), the inputs sampled from the estimates the policy itself keeps
along every run (``dsd-emu train-awc`` trains on them)."""

from __future__ import annotations

import math
import random
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from emulator.scenario import load_scenario
from emulator.sim.simulation import Simulation
from runtime.estimates import WindowEstimates, window_features
from runtime.events import EventLog
from runtime.metrics import summarise
from runtime.observations import RoundObservation
from runtime.policies import Fixed

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
            Simulation(scenario, log, policy_factory=factory).run()
            throughputs.append(summarise(log.events)["throughput_tok_s"] or 0.0)
    best = max(throughputs) or 1.0
    return samples, [t / best for t in throughputs]
