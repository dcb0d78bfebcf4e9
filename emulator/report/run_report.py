"""The results folder of an emulated run: ``run.json``, ``metrics.json``, the PNG plots and a
``report.md`` that ties them together (the event logs are already there)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from emulator.report.attribution import compare_breakdowns, format_breakdown
from emulator.report.fidelity import format_fidelity
from emulator.report.plots import plot_acceptance, plot_gamma, plot_links, plot_tpot_cdfs
from emulator.run.resources import shaping_cost, summarise_samples
from emulator.scenario import Scenario
from emulator.sim.calibration import CalibrationError, read_profile
from runtime.events import read_events
from runtime.metrics import format_table

SATURATED_SHARE = 0.5  # a core this often >= 95 % busy slows whatever shares it


@dataclass
class Report:
    path: Path
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what the run cost, said plainly


def contention_warnings(resources: dict[str, Any], cpus: dict[str, str]) -> list[str]:
    """Say where CPU contention may have slowed the emulated processes."""
    warnings = []
    for core in resources.get("cores", []):
        if core["saturated_share"] >= SATURATED_SHARE:
            users = sorted(name for name, cpu in cpus.items() if cpu == str(core["core"]))
            warnings.append(
                f"CPU {core['core']} was >= 95 % busy in {core['saturated_share']:.0%} of the "
                f"samples (pinned there: {', '.join(users) or 'nothing'}): processes on it may "
                "have run slower than profiled; the simulator prices only the turns edges "
                "or replicas take on a shared core (the profile's time-sharing)"
            )
    return warnings


def _profiled_acceptance(scenario: Scenario, run_info: dict[str, Any]) -> list[float]:
    """The per-position acceptance of the profile the simulation used (none without one)."""
    used = run_info.get("sim_profiles", {}).get(scenario.edges[0].draft)
    try:
        return read_profile(used["path"]).acceptance if used else []
    except CalibrationError:
        return []


def write_results(
    out: Path,
    scenario: Scenario,
    run_info: dict[str, Any],
    emu_events: list[dict[str, Any]],
    sim_events: list[dict[str, Any]],
    emu: dict[str, Any],
    sim: dict[str, Any] | None,
    comparison: dict[str, Any] | None,
) -> Report:
    resources_path = out / "resources.jsonl"
    resources = summarise_samples(read_events(resources_path) if resources_path.exists() else [])
    report = Report(out / "report.md", contention_warnings(resources, run_info["cpus"]))
    shaping = shaping_cost(resources)
    if shaping:
        report.notes.append(
            f"link shaping: {shaping['shapers']} shaper processes took "
            f"{shaping['cpu_percent_mean_total']:.1f} % of a core in all (mean over the run; "
            f"the busiest {shaping['cpu_percent_max_one']:.1f} % at its peak), at most "
            f"{shaping['rss_mb_max_one']:.0f} MB each"
        )
    (out / "run.json").write_text(json.dumps(run_info, indent=1))
    round_time = compare_breakdowns(emu_events, sim_events) if sim_events else {}
    first_token = compare_breakdowns(emu_events, sim_events, "first_token") if sim_events else {}
    metrics = {
        "emu": emu,
        "sim": sim,
        "fidelity": comparison,
        "round_time": round_time,
        "first_token_time": first_token,
        "resources": resources,
        "shaping_cost": shaping,
        "sim_profiles": run_info.get("sim_profiles", {}),
    }
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1))
    worlds = {"emulated": emu_events, **({"simulated": sim_events} if sim_events else {})}
    wan = scenario.wan.trace if scenario.wan else None
    links = {host: (group.link.trace, wan) for host, group in scenario.edge_hosts()}
    plots = []
    if run_info["t_start"]:
        plots.append(plot_links(emu_events, links, run_info["t_start"], out / "links.png"))
    plots.append(plot_gamma(worlds, out / "gamma.png"))
    plots.append(plot_tpot_cdfs(worlds, out / "tpot_cdf.png"))
    plots.append(
        plot_acceptance(worlds, _profiled_acceptance(scenario, run_info), out / "acceptance.png")
    )
    report.path.write_text(
        _markdown(
            scenario,
            run_info,
            emu,
            sim,
            comparison,
            {"round time": round_time, "first token's time": first_token},
            resources,
            report.warnings,
            plots,
        )
    )
    return report


def _markdown(
    scenario: Scenario,
    run_info: dict[str, Any],
    emu: dict[str, Any],
    sim: dict[str, Any] | None,
    comparison: dict[str, Any] | None,
    breakdowns: dict[str, dict[str, dict[str, float | None]]],
    resources: dict[str, Any],
    warnings: list[str],
    plots: list[Path],
) -> str:
    lines = [f"# DSD-Emu run: {scenario.name}", ""]
    if run_info["interrupted"]:
        lines += [
            "**Interrupted.** Everything up to the interruption is here: the event logs are "
            "written as things happen, and a request cut short is logged as failed with "
            "error `interrupted`.",
            "",
        ]
    lines += [
        f"- scenario: `scenario.yaml` (as run), seed {scenario.seed}",
        f"- shaping backend: {run_info['backend']} ({run_info['backend_reason']})",
        f"- CPUs: {', '.join(f'{k} → {v}' for k, v in run_info['cpus'].items())}",
        f"- wall time: {run_info['wall_s']:.0f} s",
        f"- trace replay lateness p99: {run_info['replay_lateness_ms_p99'] or 0:.2f} ms",
        *[
            f"- simulator calibrated from `{used['path']}` ({used['grid']} grid, measured "
            f"{used['measured']}, machine fingerprint {used['fingerprint_id'] or 'not recorded'})"
            for used in run_info.get("sim_profiles", {}).values()
        ],
        "",
        "## Emulated",
        "",
        "```",
        format_table(emu),
        "```",
    ]
    if sim is not None and comparison is not None:
        lines += [
            "",
            "## Simulated (same scenario, traces, seed and policies)",
            "",
            "```",
            format_table(sim),
            "```",
            "",
            "## Fidelity: relative error (simulated − emulated) / emulated",
            "",
            "```",
            format_fidelity(comparison),
            "```",
        ]
    for what, compared in breakdowns.items():
        if compared:
            lines += [
                "",
                f"## Where the {what} goes (mean ms; share of the difference)",
                "",
                "```",
                format_breakdown(compared),
                "```",
            ]
    lines += ["", "## CPU and memory", ""]
    lines += [
        f"- CPU {c['core']}: {c['busy_percent_mean']:.0f} % busy on average, "
        f"saturated in {c['saturated_share']:.0%} of {resources['samples']} samples"
        for c in resources.get("cores", [])
    ]
    lines += [
        f"- {name}: CPU {p['cpu_percent_mean']:.0f} % mean / {p['cpu_percent_max']:.0f} % max, "
        f"{p['rss_mb_max']:.0f} MB"
        for name, p in resources.get("processes", {}).items()
    ]
    if warnings:
        lines += ["", "## Warnings", "", *[f"- {w}" for w in warnings]]
    lines += ["", "## Plots", ""]
    lines += [f"![{p.stem}]({p.name})" for p in plots]
    return "\n".join(lines) + "\n"
