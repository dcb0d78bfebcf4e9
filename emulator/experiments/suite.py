"""The fidelity suite's scenario matrix: recorded links x edge counts x load x window policy,
in two sets.

Every case is an ordinary scenario file, run by the main job in the emulator and then the
simulator with the same seed. Edge counts go from one to the three that two cores carry:
the edges share one core with the link shapers (0.7, 0.45 or 0.3 of it each), the target
has the other. Load is ``light`` (the target has its whole core and waits for drafts),
``moderate`` (half a core) or ``saturating`` (0.3 of a core, so that drafts queue for it).
Cases of one link, edge count and load form a group whose policies are ranked in both
worlds.

The **development** set is what model changes are judged on. The **held-out** set is never
used for that: it replays other recordings of each dataset family, with other seeds, other
prompts of the embedded set, and a load level the development set lacks; its results are
reported beside the development set's, never acted on.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from emulator.traces.recorded import held_out_links, recorded_links
from runtime.prompts import DEFAULT_PROMPTS

EDGE_CPU = {1: 0.7, 2: 0.45, 3: 0.3}
CLOUD_CPU = {"light": 1.0, "moderate": 0.5, "saturating": 0.3}
MAX_NEW_TOKENS = 32
# every run takes about as long: one edge runs four requests, two or three edges two each
REQUESTS_PER_EDGE = {1: 4, 2: 2, 3: 2}
SETS = ("development", "held-out")
HELD_OUT_SEED_OFFSET = 1000
HELD_OUT_PROMPTS = DEFAULT_PROMPTS[6:]  # the development cases' edges use the first four
PROMPTS_FILE = "held-out-prompts.txt"


@dataclass(frozen=True)
class SuiteCase:
    link: str
    edges: int
    load: str
    policy: str
    split: str = "development"  # or "held-out"

    @property
    def group(self) -> str:
        return f"{self.link}-{self.edges}e-{self.load}"

    @property
    def name(self) -> str:
        return f"{self.group}-{self.policy.replace(':', '')}"


def _cases(link: str, edges: int, load: str, *policies: str) -> list[SuiteCase]:
    return [SuiteCase(link, edges, load, policy) for policy in policies]


def _held_out(link: str, edges: int, load: str, *policies: str) -> list[SuiteCase]:
    return [SuiteCase(link, edges, load, policy, SETS[1]) for policy in policies]


SUITES = {
    "smoke": [
        *_cases("lte-driving", 1, "light", "fixed:4", "awc"),
        *_cases("lte-driving", 3, "saturating", "awc"),
        *_held_out("3g-tram", 1, "light", "awc"),
    ],
    "full": [
        *_cases("lte-driving", 1, "light", "fixed:4", "heuristic", "awc"),
        *_cases("3g-bus", 1, "light", "fixed:4", "heuristic", "awc"),
        *_cases("edge-vs-cloud-rtt", 1, "light", "awc"),
        *_cases("5g-driving", 2, "light", "fixed:4", "awc"),
        *_cases("wifi", 2, "light", "fixed:4", "awc"),
        *_cases("lte-driving", 3, "saturating", "fixed:2", "fixed:6", "awc"),
        *_held_out("lte-short", 1, "light", "fixed:2", "awc"),
        *_held_out("3g-tram", 1, "moderate", "heuristic", "awc"),
        *_held_out("edge-vs-cloud-rtt-b", 1, "light", "fixed:3"),
        *_held_out("5g-driving-b", 2, "moderate", "fixed:3", "awc"),
        *_held_out("wifi-b", 3, "saturating", "fixed:4", "awc"),
    ],
}


def scenario_document(case: SuiteCase, link: dict[str, Any], seed: int) -> dict[str, Any]:
    """The scenario file of one case (as parsed YAML)."""
    held_out = case.split == SETS[1]
    workload: dict[str, Any] = {
        "requests_per_edge": REQUESTS_PER_EDGE[case.edges],
        "max_new_tokens": MAX_NEW_TOKENS,
    }
    if held_out:
        workload["prompts"] = PROMPTS_FILE
    return {
        "name": case.name,
        "seed": seed + HELD_OUT_SEED_OFFSET if held_out else seed,
        "cloud": {
            "model": "smollm2",
            "cpu": CLOUD_CPU[case.load],
            "batching": {"max_batch": 8, "max_wait_ms": 20},
        },
        "edges": [
            {
                "name": "e",
                "count": case.edges,
                "draft": "int8",
                "cpu": EDGE_CPU[case.edges],
                "policy": case.policy,
                "link": link,
            }
        ],
        "wan": {"constant": {"rate_mbps": 1000, "delay_ms": 2}},
        "workload": workload,
    }


class SuiteUnavailable(RuntimeError):
    """The recorded traces the suite replays are not beside the project."""


def suite_cases(suite: str, which: str = "both") -> list[SuiteCase]:
    """The suite's cases of one set (``development``, ``held-out``) or of ``both``."""
    return [case for case in SUITES[suite] if which in ("both", case.split)]


def write_suite(
    suite: str, folder: Path, seed: int, which: str = "both"
) -> list[tuple[SuiteCase, Path]]:
    """The scenario files of the suite's cases (of one set, or both) for one seed, written
    into ``folder``."""
    links = {**recorded_links(), **held_out_links()}
    if not links:
        raise SuiteUnavailable(
            "the recorded traces (../shared/traces beside the project) are missing; "
            "run one scenario of your own with --scenario FILE"
        )
    (folder / PROMPTS_FILE).write_text("\n".join(HELD_OUT_PROMPTS) + "\n")
    written = []
    for case in suite_cases(suite, which):
        path = folder / f"{case.name}.yaml"
        path.write_text(yaml.safe_dump(scenario_document(case, links[case.link], seed)))
        written.append((case, path))
    return written
