"""Summarise an event log into the project's metrics (one definition for both worlds).

TTFT = first token at the edge - request arrival; TPOT = (done - first token) /
(output tokens - 1); throughput = output tokens / (last done - first arrival).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import Any

import numpy as np

from runtime.rounds import RoundRecord

PERCENTILES = (50, 95, 99)


def distribution(values: Iterable[float | None]) -> dict[str, float | None]:
    """Mean and p50/p95/p99 of a sample, its Nones left out (all None when empty)."""
    data = np.asarray([v for v in values if v is not None], dtype=float)
    if data.size == 0:
        return {"mean": None, **{f"p{p}": None for p in PERCENTILES}, "n": 0}
    stats: dict[str, float | None] = {"mean": float(data.mean())}
    stats.update({f"p{p}": float(np.percentile(data, p)) for p in PERCENTILES})
    stats["n"] = int(data.size)
    return stats


def _request_times(req: dict[str, Any]) -> tuple[float | None, float | None, float | None]:
    ttft = tpot = e2e = None
    if req.get("t_first_token") is not None:
        ttft = (req["t_first_token"] - req["t_arrival"]) * 1000.0
        if req["output_tokens"] > 1:
            tpot = (req["t_done"] - req["t_first_token"]) * 1000.0 / (req["output_tokens"] - 1)
    if req.get("t_done") is not None:
        e2e = (req["t_done"] - req["t_arrival"]) * 1000.0
    return ttft, tpot, e2e


def _summarise_group(requests: list[dict[str, Any]], rounds: list[RoundRecord]) -> dict[str, Any]:
    ok = [r for r in requests if not r.get("error")]
    times = [_request_times(r) for r in ok]
    tokens = sum(r["output_tokens"] for r in ok)
    start = min((r["t_arrival"] for r in ok), default=None)
    end = max((r["t_done"] for r in ok), default=None)
    span = (end - start) if start is not None and end is not None else 0.0
    drafted = sum(r.drafted for r in rounds)
    accepted = sum(r.accepted for r in rounds)
    emitted = sum(r.emitted for r in rounds)
    round_ms = [(r.t_recv - r.t_send) * 1000.0 for r in rounds if r.t_send is not None]
    return {
        "requests": len(ok),
        "failed_requests": len(requests) - len(ok),
        "output_tokens": tokens,
        "duration_s": span,
        "throughput_tok_s": tokens / span if span > 0 else None,
        "ttft_ms": distribution(t[0] for t in times),
        "tpot_ms": distribution(t[1] for t in times),
        "e2e_ms": distribution(t[2] for t in times),
        "rounds": len(rounds),
        "acceptance_rate": accepted / drafted if drafted else None,
        "tokens_per_round": emitted / len(rounds) if rounds else None,
        "gamma": distribution(r.gamma for r in rounds),
        "round_trip_ms": distribution(round_ms),
        "draft_ms": distribution(r.draft_ms for r in rounds),
        "verify_ms": distribution(r.verify_ms for r in rounds),
        "queue_ms": distribution(r.queue_ms for r in rounds),
        "batch_size": distribution(r.batch_size for r in rounds),
        "bytes_up": sum(r.bytes_up for r in rounds),
        "bytes_down": sum(r.bytes_down for r in rounds),
        **_replayed(rounds),
    }


def _replayed(rounds: list[RoundRecord]) -> dict[str, Any]:
    """Emulated edges' rounds (``runtime.replay_draft``): how many took their tokens from the
    recorded tables and how many from the shared real draft, and how long those waited."""
    replayed = [r for r in rounds if r.proposal_source]
    if not replayed:
        return {}
    fallbacks = [r for r in replayed if r.proposal_source == "fallback"]
    return {
        "replayed_rounds": {
            "table": len(replayed) - len(fallbacks),
            "fallback": len(fallbacks),
            "fallback_ms": distribution(r.fallback_ms for r in fallbacks),
        }
    }


def summarise(events: Iterable[dict[str, Any]], per_edge: bool = True) -> dict[str, Any]:
    """Overall and (``per_edge``) per-edge metrics from the events of one run (any number of
    processes); a sweep's point of 10,000 edges needs only the overall."""
    requests: dict[str, list[dict[str, Any]]] = defaultdict(list)
    rounds: dict[str, list[RoundRecord]] = defaultdict(list)
    processes = []
    for event in events:
        kind = event.get("event")
        if kind == "request":
            requests[str(event["edge"])].append(event)
        elif kind == "round":
            record = RoundRecord.of_event(event)
            rounds[record.edge].append(record)
        elif kind == "process":
            processes.append(event)
    all_requests = [r for group in requests.values() for r in group]
    all_rounds = [r for group in rounds.values() for r in group]
    overall = _summarise_group(all_requests, all_rounds)
    if per_edge:
        edges = sorted(set(requests) | set(rounds))
        overall["per_edge"] = {e: _summarise_group(requests[e], rounds[e]) for e in edges}
    overall["processes"] = processes
    return overall


def format_table(summary: dict[str, Any], max_edges: int = 16) -> str:
    """A plain-text table of the headline metrics, overall and per edge (the first
    ``max_edges`` edges; a line says how many more there are)."""
    header = f"{'scope':<12}{'reqs':>6}{'tokens':>8}{'tok/s':>9}{'TTFT p50':>10}"
    header += f"{'TPOT p50':>10}{'TPOT p95':>10}{'accept':>8}{'tok/rnd':>9}"
    lines = [header, "-" * len(header)]

    def fmt(value: float | None, spec: str) -> str:
        return format(value, spec) if value is not None else "-"

    per_edge = list(summary.get("per_edge", {}).items())
    scopes = [("overall", summary), *per_edge[:max_edges]]
    for name, data in scopes:
        lines.append(
            f"{name:<12}{data['requests']:>6}{data['output_tokens']:>8}"
            f"{fmt(data['throughput_tok_s'], '9.1f'):>9}"
            f"{fmt(data['ttft_ms']['p50'], '10.1f'):>10}"
            f"{fmt(data['tpot_ms']['p50'], '10.1f'):>10}"
            f"{fmt(data['tpot_ms']['p95'], '10.1f'):>10}"
            f"{fmt(data['acceptance_rate'], '8.2f'):>8}"
            f"{fmt(data['tokens_per_round'], '9.2f'):>9}"
        )
    if len(per_edge) > max_edges:
        lines.append(f"... and {len(per_edge) - max_edges} more edges (all in the JSON summary)")
    return "\n".join(lines)
