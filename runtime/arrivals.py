"""When an edge's requests arrive: the same offsets in the emulator and in the simulator.

Open-loop (Poisson) workloads draw their inter-arrival gaps from a stream fixed by the
scenario's seed and the edge's name, so that both worlds see the very same arrival times.
"""

from __future__ import annotations

import random
import zlib


def random_stream(seed: int, name: str) -> random.Random:
    """A random stream fixed by a seed and a name (integer seeding: string seeding hashes
    with SHA-512, too slow for the simulator's 10,000 edges)."""
    return random.Random((seed << 32) | zlib.crc32(name.encode()))


def poisson_offsets(rate_per_s: float, count: int, seed: int, edge: str) -> list[float]:
    """Arrival times (s from the workload's start) of ``count`` Poisson arrivals."""
    if rate_per_s <= 0:
        raise ValueError(f"arrival rate must be > 0, got {rate_per_s}")
    rng = random_stream(seed, f"{edge}/arrivals")
    offsets, at = [], 0.0
    for _ in range(count):
        at += rng.expovariate(rate_per_s)
        offsets.append(at)
    return offsets
