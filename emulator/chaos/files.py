"""Malformed traces and scenario files: every one must be refused with a clear error (the
exceptions the command-line programs turn into one line), never crash a reader.

Each format starts from a small valid sample; the mutations are those real files suffer:
truncation, flipped bytes, a stray line, lines swapped, a number replaced by something odd,
an emptied or binary file.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

from emulator.chaos.fuzz import flip_bytes
from emulator.scenario import ScenarioError, load_scenario
from emulator.traces.csvio import write_trace
from emulator.traces.importers import import_trace
from emulator.traces.linktrace import LinkTrace, TraceError

CLEAN_ERRORS = (TraceError, ScenarioError, ValueError, OSError)
ODD_NUMBERS = ("nan", "-1", "1e309", "-inf", "", "0", "x", "1,5", "99999999999999999999")


def trace_samples(folder: Path) -> dict[str, str]:
    """A small valid file of each format, as text."""
    nan = np.full(3, np.nan)
    series = {
        "rate_mbps": np.array([5.0, 0.0, 8.0]),
        "delay_ms": np.array([10.0, 20.0, 15.0]),
        "jitter_ms": nan,
        "loss_pct": np.array([0.0, 100.0, 1.0]),
    }
    canonical = folder / "sample.csv"
    write_trace(LinkTrace(np.array([0.0, 1.0, 2.5]), 4.0, series, dict(series)), canonical)
    ping = "\n".join(f"2020.01.01_10.00.{s:02d},{900 + s},{40 + s},{30 + s},2,0" for s in range(6))
    return {
        "canonical": canonical.read_text(),
        "mahimahi": "".join(f"{t}\n" for t in (1, 1, 2, 5, 9, 9, 9, 14, 20, 31)),
        "norway": "".join(f"{t:.1f} {1.5 + t % 3:.2f}\n" for t in range(8)),
        "ucc": "Timestamp,DL_bitrate,UL_bitrate,PINGAVG,PINGSTDEV,PINGLOSS\n" + ping + "\n",
        "wifi-cellular": "".join(f"{t},{125000 + 1000 * t}\n" for t in range(8)),
        "5gophers": "carrier,rtt_ms\n" + "".join(f"VERIZON,{20 + t}\n" for t in range(8)),
        "mecperf": ",".join(f"2020-01-01 10:00:0{t}.000000_{30 + t}" for t in range(8)) + "\n",
    }


def scenario_sample() -> str:
    """A valid scenario (the tiny pair, one edge), as YAML."""
    return yaml.safe_dump(
        {
            "name": "fuzzed",
            "seed": 1,
            "cloud": {"model": "tiny", "cpu": 1.0, "batching": {"max_batch": 4}},
            "edges": [
                {
                    "name": "e",
                    "count": 2,
                    "draft": "perturbed:0.1",
                    "cpu": 0.5,
                    "policy": "fixed:4",
                    "link": {"constant": {"rate_mbps": 10, "delay_ms": 20, "loss_pct": 0}},
                }
            ],
            "workload": {"requests_per_edge": 1, "max_new_tokens": 8},
        },
        sort_keys=False,
    )


def mutate_text(rng: random.Random, text: str) -> bytes:
    """One malformed version of a text file."""
    data = text.encode()
    lines = text.splitlines(keepends=True)
    choice = rng.randrange(9)
    if choice == 0:
        return data[: rng.randrange(len(data))]
    if choice == 1:
        return flip_bytes(rng, data, 6)
    if choice == 2:
        lines.insert(rng.randrange(len(lines) + 1), rng.choice(["garbage\n", ",,,\n", "\t\n"]))
    elif choice == 3 and len(lines) > 1:
        i, j = rng.sample(range(len(lines)), 2)
        lines[i], lines[j] = lines[j], lines[i]
    elif choice == 4:
        numbers = [i for i, ch in enumerate(text) if ch.isdigit()]
        if numbers:
            at = rng.choice(numbers)
            return (text[:at] + rng.choice(ODD_NUMBERS) + text[at + 1 :]).encode()
    elif choice == 5:
        return b""
    elif choice == 6:
        return rng.randbytes(rng.randrange(1, 512))
    elif choice == 7:
        lines = lines[: max(1, len(lines) // 3)]
    else:
        lines.append(lines[-1] * rng.randrange(2, 50))
    return "".join(lines).encode()


@dataclass
class FileOutcome:
    """How many malformed files were read, refused cleanly, read as valid, or crashed."""

    files: int = 0
    refused: int = 0
    accepted: int = 0
    crashes: list[str] = field(default_factory=list)

    def record(self, read: Callable[[], object], what: str) -> None:
        self.files += 1
        try:
            read()
        except CLEAN_ERRORS:
            self.refused += 1
            return
        except Exception as exc:  # the point: anything else is a crash
            self.crashes.append(f"{what}: {type(exc).__name__}: {exc}")
            return
        self.accepted += 1


def fuzz_traces(folder: Path, per_format: int, seed: int) -> FileOutcome:
    rng = random.Random(seed)
    outcome = FileOutcome()
    suffix = {"mahimahi": ".down", "canonical": ".csv"}
    for fmt, text in trace_samples(folder).items():
        for index in range(per_format):
            path = folder / f"{fmt}-{index}{suffix.get(fmt, '.txt')}"
            path.write_bytes(mutate_text(rng, text))
            outcome.record(lambda f=fmt, p=path: import_trace(f, p), f"{fmt} {path.name}")
    return outcome


def fuzz_scenarios(folder: Path, count: int, seed: int) -> FileOutcome:
    rng = random.Random(seed)
    outcome = FileOutcome()
    text = scenario_sample()
    for index in range(count):
        path = folder / f"scenario-{index}.yaml"
        path.write_bytes(mutate_text(rng, text))
        outcome.record(lambda p=path: load_scenario(p), path.name)
    return outcome
