"""From DSD-Sim's model of the authors' setting to ours, one correction at a time: what
each changes in the simulated answer (``scripts/compare_dsd_sim.py``).

The steps, each adding one correction to the one before, on the same scenario, seed and
edges:

1. **DSD-Sim's semantics**: a request ends after ceil(answer / γ) rounds whatever was
   accepted, credited its whole answer; links a fixed latency with jitter, no loss, no rate.
2. **token budget**: a request ends when its answer's tokens were emitted (lossless SD).
3. **loss**: the slow tiers' drops, priced as our link prices a lost message (a
   retransmission timeout).
4. **bandwidth**: each tier's link at the median rate (the slower direction's) of the
   recorded network its tier replays in the traces scenario; delays as before.
5. **recorded traces**: the traces scenario itself: rates, RTTs and outages as recorded.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from emulator.experiments.capacity import point_metrics
from emulator.scenario import Overrides, Slo, absolute_traces, load_scenario
from emulator.sim.simulation import SimOptions, Simulation
from emulator.traces.stats import summarise_trace
from runtime.events import EventLog

MEASURES = (
    "throughput_tok_s",
    "goodput_tok_s",
    "slo_share",
    "ttft_p50_ms",
    "tpot_p50_ms",
    "tpot_p95_ms",
)


@dataclass(frozen=True)
class Step:
    name: str
    says: str
    fixed_rounds: bool


STEPS = (
    Step("dsd-sim", "DSD-Sim's semantics: ceil(answer / γ) rounds, no loss, no rate", True),
    Step("token-budget", "+ requests end at their token budget", False),
    Step("loss", "+ the slow tiers' drops (a retransmission timeout each)", False),
    Step("bandwidth", "+ each tier's recorded median rate", False),
    Step("traces", "+ the recorded traces (rates, RTTs, outages)", False),
)


def without_loss(raw: dict[str, Any]) -> dict[str, Any]:
    raw = copy.deepcopy(raw)
    for group in raw["edges"]:
        group["link"].get("constant", {}).pop("loss_pct", None)
    return raw


def with_recorded_rates(raw: dict[str, Any], traces: Path) -> dict[str, Any]:
    """Each group's constant link given the median rate of its link in ``traces`` (the
    slower direction's: both carry the round)."""
    recorded = {group.name: group.link.trace for group in load_scenario(traces).edges}
    raw = copy.deepcopy(raw)
    for group in raw["edges"]:
        stats = summarise_trace(recorded[group["name"]])
        rates = [r for r in (stats["up_mbps_p50"], stats["down_mbps_p50"]) if r is not None]
        if rates:
            group["link"]["constant"]["rate_mbps"] = min(rates)
    return raw


def with_alpha(raw: dict[str, Any], alpha: float | None) -> dict[str, Any]:
    """Every group's acceptance a constant ``alpha`` (kept where None)."""
    raw = copy.deepcopy(raw)
    if alpha is not None:
        for group in raw["edges"]:
            group["acceptance"] = {"alpha": alpha, "source": f"constant {alpha} (--alpha)"}
    return raw


def step_scenarios(
    scenario: Path, traces: Path, alpha: float | None = None
) -> dict[str, dict[str, Any]]:
    """Each step's scenario, parsed, its paths absolute (every group's acceptance a
    constant ``alpha`` where given)."""
    base = with_alpha(
        absolute_traces(yaml.safe_load(scenario.read_text(encoding="utf-8")), scenario.parent),
        alpha,
    )
    recorded = with_alpha(
        absolute_traces(yaml.safe_load(traces.read_text(encoding="utf-8")), traces.parent), alpha
    )
    lossless = without_loss(base)
    return {
        "dsd-sim": lossless,
        "token-budget": lossless,
        "loss": base,
        "bandwidth": with_recorded_rates(base, traces),
        "traces": recorded,
    }


def run_steps(
    scenario: Path,
    traces: Path,
    folder: Path,
    edges: int | None = None,
    slo: Slo | None = None,
    alpha: float | None = None,
    say: Callable[[str], None] = print,
) -> list[dict[str, Any]]:
    """Every step simulated: its measures and each one's change from the step before."""
    folder.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    steps = step_scenarios(scenario, traces, alpha)
    for step, (name, raw) in zip(STEPS, steps.items(), strict=True):
        path = folder / f"{name}.yaml"
        path.write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
        loaded = load_scenario(path, Overrides(edges=edges))
        objectives = slo or loaded.slo or Slo()
        log = EventLog(None, "sim", keep=True, flush_each=False, kinds=("request", "batch"))
        options = SimOptions(fixed_rounds=step.fixed_rounds)
        simulation = Simulation(loaded, log, options)
        simulation.run()
        records = simulation.calibration().values()
        measures = point_metrics(log.events, objectives, targets=loaded.cloud.targets)
        requests = [e for e in log.events if e["event"] == "request" and not e.get("error")]
        row = {
            "step": name,
            "says": step.says,
            **{m: measures[m] for m in MEASURES},
            "rounds_per_request": sum(r["rounds"] for r in requests) / max(1, len(requests)),
            "modelled": sorted({part for record in records for part in record.get("modelled", [])}),
        }
        if rows:
            row["change"] = {m: _change(m, row[m], rows[-1][m]) for m in MEASURES}
        rows.append(row)
        say(f"{name}: {step.says}")
    return rows


def _change(measure: str, value: float | None, before: float | None) -> float | None:
    """The change from ``before``: relative, but for a share its difference (None where
    either is missing, or a relative change from zero)."""
    if value is None or before is None:
        return None
    if measure == "slo_share":
        return value - before
    return value / before - 1.0 if before else None


def corrections_markdown(
    rows: list[dict[str, Any]], edges: int | None, scenario: Path, alpha: float | None = None
) -> str:
    header = "| step | throughput tok/s | goodput tok/s | in SLOs | TTFT p50 ms | TPOT p50 ms "
    header += "| TPOT p95 ms | rounds/request |"
    lines = [
        f"# From DSD-Sim's model to ours: {scenario.name}"
        + (f" at {edges} edges" if edges else "")
        + (f", acceptance a constant {alpha}" if alpha is not None else ""),
        "",
        "Each step adds one correction to the step above (its change from it in brackets; "
        "for the share in the SLOs, in percentage points).",
        "",
        header,
        "|---" * 8 + "|",
    ]
    for row in rows:
        change = row.get("change", {})

        def cell(measure: str, spec: str, row=row, change=change) -> str:
            value = row[measure]
            text = "-" if value is None else format(value, spec)
            delta = change.get(measure)
            if delta is None:
                return text
            if measure == "slo_share":
                return f"{text} ({100 * delta:+.0f} pt)"
            return f"{text} ({delta:+.0%})"

        lines.append(
            f"| {row['says']} | {cell('throughput_tok_s', '.0f')} | "
            f"{cell('goodput_tok_s', '.0f')} | {cell('slo_share', '.0%')} | "
            f"{cell('ttft_p50_ms', '.0f')} | {cell('tpot_p50_ms', '.1f')} | "
            f"{cell('tpot_p95_ms', '.1f')} | {row['rounds_per_request']:.1f} |"
        )
    modelled = sorted({part for row in rows for part in row["modelled"]})
    if modelled:
        lines += ["", "Modelled, not measured:", *[f"- {part}" for part in modelled]]
    return "\n".join(lines) + "\n"
