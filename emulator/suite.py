"""The fidelity suite's scenario matrix: recorded links x edge counts x load x window policy.

Every case is an ordinary scenario file, run by the main job in the emulator and then the
simulator with the same seed. Edge counts go from one to the three that two cores carry:
the edges share one core with the link shapers (0.7, 0.45 or 0.3 of it each), the target
has the other. Load is ``light`` (the target has its whole core and waits for drafts) or
``saturating`` (the target is held to 0.3 of a core, so that drafts queue for it). Cases
of one link, edge count and load form a group whose policies are ranked in both worlds.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from emulator.traces.recorded import recorded_links

EDGE_CPU = {1: 0.7, 2: 0.45, 3: 0.3}
CLOUD_CPU = {"light": 1.0, "saturating": 0.3}
MAX_NEW_TOKENS = 64


@dataclass(frozen=True)
class SuiteCase:
    link: str
    edges: int
    load: str
    policy: str

    @property
    def group(self) -> str:
        return f"{self.link}-{self.edges}e-{self.load}"

    @property
    def name(self) -> str:
        return f"{self.group}-{self.policy.replace(':', '')}"


def _cases(link: str, edges: int, load: str, *policies: str) -> list[SuiteCase]:
    return [SuiteCase(link, edges, load, policy) for policy in policies]


SUITES = {
    "smoke": [
        *_cases("lte-driving", 1, "light", "fixed:4", "awc"),
        *_cases("3g-bus", 1, "light", "awc"),
        *_cases("lte-driving", 3, "saturating", "awc"),
    ],
    "full": [
        *_cases("lte-driving", 1, "light", "fixed:4", "heuristic", "awc"),
        *_cases("3g-bus", 1, "light", "fixed:4", "heuristic", "awc"),
        *_cases("edge-vs-cloud-rtt", 1, "light", "awc"),
        *_cases("5g-driving", 2, "light", "fixed:4", "awc"),
        *_cases("wifi", 2, "light", "fixed:4", "awc"),
        *_cases("lte-driving", 3, "saturating", "fixed:2", "fixed:6", "awc"),
    ],
}


def scenario_document(case: SuiteCase, link: dict[str, Any], seed: int) -> dict[str, Any]:
    """The scenario file of one case (as parsed YAML)."""
    return {
        "name": case.name,
        "seed": seed,
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
        "workload": {
            # one edge runs two requests, more edges one each: every run takes about as long
            "requests_per_edge": 2 if case.edges == 1 else 1,
            "max_new_tokens": MAX_NEW_TOKENS,
        },
    }


class SuiteUnavailable(RuntimeError):
    """The recorded traces the suite replays are not beside the project."""


def write_suite(suite: str, folder: Path, seed: int) -> list[tuple[SuiteCase, Path]]:
    """The suite's scenario files, written into ``folder``."""
    links = recorded_links()
    if not links:
        raise SuiteUnavailable(
            "the recorded traces (../shared/traces beside the project) are missing; "
            "run one scenario of your own with --scenario FILE"
        )
    written = []
    for case in SUITES[suite]:
        path = folder / f"{case.name}.yaml"
        path.write_text(yaml.safe_dump(scenario_document(case, links[case.link], seed)))
        written.append((case, path))
    return written
