"""Benchmark the DSD runtime on loopback: losslessness, overhead, speed vs transformers, batching.

The target server runs as its own process (1 torch thread, pinned to CPU 1 where there are
two); edges run in this process (1 torch thread, pinned to CPU 0). Prints one JSON object
as its last line.

- One edge against transformers' assisted generation on the same two cores (DSD: edge and
  target one thread each on a core of its own; assisted: one process, two threads over both
  cores), alternating, after a warm-up of each: the medians of ``--repeats`` runs.
- Batching at saturation: ``SATURATION_EDGES`` closed-loop edges, emulated (the real
  draft's recorded tokens and profiled times from this machine's profile, ``draft:
  replay``; the tiny pair, which is not profiled, has real drafters), served with batches
  of up to 8 rows and of 1: tokens per wall-clock second from the first request to the
  last token (prefill included), and apart from it tokens per second of target compute.

    python scripts/bench_runtime.py --json          # default pair (SmolLM2-135M + int8 draft)
    python scripts/bench_runtime.py --tiny --json   # tiny random pair, < 2 min
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from emulator.sim.machine_profiles import machine_profile
from runtime.cpuquota import CpuQuota
from runtime.draft import DrafterFactory, EdgeClient, EdgeSettings
from runtime.draft_service import SharedDraft
from runtime.events import EventLog, read_events
from runtime.machine import fingerprint
from runtime.models import LoadedModel, load_model, make_draft
from runtime.policies import Fixed
from runtime.process import configure
from runtime.profile_store import cached_profile_path
from runtime.prompts import DEFAULT_PROMPTS
from runtime.reference import generate_greedy
from runtime.replay_draft import EdgeClock, ReplayDraft, ReplayTables
from runtime.serverproc import ServerProcess

SATURATION_EDGES = 16  # closed-loop edges: twice the batch, so that batches are full
SATURATED_BATCH = 8


def pair(tiny: bool) -> tuple[str, str]:
    return ("tiny", "perturbed:0.3") if tiny else ("smollm2", "int8")


def hf_assisted(
    target: LoadedModel, draft: LoadedModel, prompts: list[list[int]], tokens: int, gamma: int
) -> tuple[float, list[list[int]]]:
    """transformers' assisted generation with a constant window of γ, in one process."""
    draft.model.generation_config.num_assistant_tokens = gamma
    draft.model.generation_config.num_assistant_tokens_schedule = "constant"
    draft.model.generation_config.assistant_confidence_threshold = 0.0
    produced, elapsed, outputs = 0, 0.0, []
    for prompt in prompts:
        ids = torch.tensor([prompt])
        start = time.perf_counter()
        out = target.model.generate(
            ids,
            attention_mask=torch.ones_like(ids),
            assistant_model=draft.model,
            do_sample=False,
            max_new_tokens=tokens,
            pad_token_id=0,
        )
        elapsed += time.perf_counter() - start
        new = out[0, len(prompt) :].tolist()
        outputs.append(new)
        produced += len(new)
    return produced / elapsed, outputs


def run_edges(
    endpoint: str,
    draft: LoadedModel | None,
    prompts: list[list[int]],
    tokens: int,
    gamma: int,
    edges: int,
    log: EventLog,
    spin_ms: float = 0.0,
    drafters: Callable[[int], DrafterFactory] | None = None,
    eos_ids: set[int] | None = None,
) -> list[list[int]]:
    """Run ``edges`` concurrent closed-loop edges, each serving every prompt once (with
    ``drafters``, edge i's drafts come from ``drafters(i)`` and its output ends at
    ``eos_ids``; else from ``draft``, whose own end tokens end it)."""
    outputs: dict[tuple[int, int], list[int]] = {}
    errors: list[BaseException] = []

    def edge(index: int) -> None:
        client = EdgeClient(
            endpoint,
            draft,
            EdgeSettings(f"edge{index}", Fixed(gamma), log=log, timeout_s=300, spin_ms=spin_ms),
            drafters=drafters(index) if drafters else None,
            eos_ids=eos_ids or set(),
        )
        try:
            for number, prompt in enumerate(prompts):
                outputs[(index, number)] = client.request(prompt, tokens).output_ids
        except BaseException as exc:
            errors.append(exc)
        finally:
            client.close()

    threads = [threading.Thread(target=edge, args=(i,)) for i in range(edges)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return [outputs[key] for key in sorted(outputs)]


class LockedDraft:
    """The real draft, shared by the emulated edges' threads for the rounds that leave the
    replay tables (as ``runtime.draft_service`` serves them in the emulator)."""

    def __init__(self, draft: LoadedModel) -> None:
        self.shared = SharedDraft(draft)
        self.lock = threading.Lock()
        self.asked = 0

    def propose(self, key: str, committed: list[int], gamma: int) -> list[int]:
        with self.lock:
            self.asked += 1
            return self.shared.propose(key, committed, gamma)

    def forget(self, key: str) -> None:
        with self.lock:
            self.shared.forget(key)


def replay_drafters(tables: ReplayTables, fallback: LockedDraft) -> Callable[[int], DrafterFactory]:
    """Per edge, its emulated drafter: a device of its own at this machine's speed."""

    def for_edge(index: int) -> DrafterFactory:
        clock = EdgeClock(CpuQuota(1.0), 1.0)

        def drafter(prompt: list[int], session: str) -> ReplayDraft:
            return ReplayDraft(tables.by_prompt(prompt), tables.timing, clock, fallback, session)

        return drafter

    return for_edge


def server_capacity(server_log: Path, edge_events: list[dict]) -> tuple[float, float]:
    """(tokens per second of target compute, tokens per wall second) for one run."""
    batches = [e for e in read_events(server_log) if e["event"] == "batch"]
    busy_s = sum(b["verify_ms"] for b in batches) / 1000.0
    requests = [e for e in edge_events if e["event"] == "request"]
    tokens = sum(r["output_tokens"] for r in requests)
    wall = max(r["t_done"] for r in requests) - min(r["t_arrival"] for r in requests)
    return tokens / busy_s, tokens / wall


def request_throughput(events: list[dict]) -> float:
    """One edge's tokens per second of its requests' own time (first token wait included)."""
    requests = [e for e in events if e["event"] == "request"]
    return sum(r["output_tokens"] for r in requests) / sum(
        r["t_done"] - r["t_arrival"] for r in requests
    )


def alternate_with_hf(
    server: ServerProcess,
    target: LoadedModel,
    draft: LoadedModel,
    prompts: list[list[int]],
    tokens: int,
    args: argparse.Namespace,
    two_cpus: bool,
    say: Callable[..., None],
) -> dict:
    """DSD's one edge and transformers' assisted generation, alternating on the same cores,
    a warm-up of each first; per run tokens per second, and the medians."""
    edge_cpus, both_cpus = ([0], [0, 1]) if two_cpus else (None, None)
    dsd, hf, overhead, outputs = [], [], [], {}
    for run in range(args.repeats + 1):
        configure(1, edge_cpus)
        log = EventLog(None, "bench", keep=True)
        outputs["dsd"] = run_edges(
            server.endpoint, draft, prompts, tokens, args.gamma, 1, log, args.spin_ms
        )
        time.sleep(args.spin_ms / 1000.0 + 0.5)  # the server stops spinning, its core idles
        configure(2 if two_cpus else 1, both_cpus)
        hf_tps, outputs["hf"] = hf_assisted(target, draft, prompts, tokens, args.gamma)
        if run == 0:
            continue  # the warm-up
        rounds = [e for e in log.events if e["event"] == "round"]
        overhead += [(r["t_recv"] - r["t_send"]) * 1000.0 - r["verify_ms"] for r in rounds]
        dsd.append(request_throughput(log.events))
        hf.append(hf_tps)
        say(f"  run {run}: DSD {dsd[-1]:.2f} tok/s, assisted {hf_tps:.2f} tok/s")
    configure(1, edge_cpus)
    ratios = [d / h for d, h in zip(dsd, hf, strict=True)]
    accepted = sum(r["accepted"] for r in rounds)
    return {
        "dsd_runs": dsd,
        "hf_runs": hf,
        "ratios": ratios,
        "overhead": overhead,
        "outputs": outputs,
        "acceptance": accepted / max(1, sum(r["drafted"] for r in rounds)),
    }


def saturate(
    server_args: list[str],
    tmp: Path,
    draft: LoadedModel,
    prompts: list[list[int]],
    tokens: int,
    args: argparse.Namespace,
    drafters: Callable[[int], DrafterFactory] | None,
    eos_ids: set[int] | None,
    say: Callable[..., None],
) -> tuple[dict[int, tuple[float, float]], list[list[int]]]:
    """``SATURATION_EDGES`` edges served with batches of up to 8 rows, then of 1: per max
    batch (tokens per compute second, tokens per wall second), and the outputs."""
    capacity, outputs = {}, []
    for max_batch in (SATURATED_BATCH, 1):
        say(f"{SATURATION_EDGES} edges, max batch {max_batch} ...")
        log = EventLog(tmp / f"edges-b{max_batch}.jsonl", "bench", keep=True)
        server_log = tmp / f"target-b{max_batch}.jsonl"
        batching = ["--max-batch", str(max_batch), "--max-wait-ms", str(args.max_wait_ms)]
        with ServerProcess([*server_args, *batching], server_log) as server:
            outs = run_edges(
                server.endpoint,
                None if drafters else draft,
                prompts,
                tokens,
                args.gamma,
                SATURATION_EDGES,
                log,
                drafters=drafters,
                eos_ids=eos_ids,
            )
        capacity[max_batch] = server_capacity(server_log, log.events)
        outputs += outs
    return capacity, outputs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tiny", action="store_true", help="tiny random pair (fast)")
    parser.add_argument("--json", action="store_true", help="print only the JSON summary")
    parser.add_argument("--gamma", type=int, default=4)
    parser.add_argument("--tokens", type=int, default=None, help="new tokens per request")
    parser.add_argument("--prompts", type=int, default=3, help="prompts per measurement")
    parser.add_argument(
        "--spin-ms",
        type=float,
        default=1000.0,
        help="busy-poll before blocking, server and single edge (both have a core of their own)",
    )
    parser.add_argument(
        "--max-wait-ms",
        type=float,
        default=20.0,
        help="how long the batching server waits for peers (default: %(default)s)",
    )
    parser.add_argument(
        "--repeats", type=int, default=5, help="alternating runs against transformers"
    )
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    tokens = args.tokens or (48 if args.tiny else 64)
    target_spec, draft_spec = pair(args.tiny)
    two_cpus = len(os.sched_getaffinity(0)) >= 2
    configure(1, [0] if two_cpus else None)
    say = (lambda *_: None) if args.json else (lambda *a: print(*a, file=sys.stderr, flush=True))

    target = load_model(target_spec)
    draft = make_draft(draft_spec, target)
    prompts = [target.encode_prompt(p) for p in DEFAULT_PROMPTS[: args.prompts]]
    server_args = ["--model", target_spec, "--threads", "1", "--spin-ms", str(args.spin_ms)]
    if two_cpus:
        server_args += ["--cpus", "1"]
    tables, fallback = None, LockedDraft(draft)
    if not args.tiny:
        machine_profile(target_spec, draft_spec, say=say)  # measured once where missing
        tables = ReplayTables.load(cached_profile_path(target_spec, draft_spec, fingerprint(1)))

    say(
        f"pair {target.name} / {draft.name}, γ={args.gamma}, "
        f"{tokens} tokens, {len(prompts)} prompts"
    )
    references = [generate_greedy(target, p, tokens) for p in prompts]
    tmp = Path(tempfile.mkdtemp(prefix="bench-runtime-"))

    say(f"1 edge over loopback and transformers' assisted generation, {args.repeats} times ...")
    with ServerProcess(server_args, tmp / "target-single.jsonl") as server:
        single = alternate_with_hf(server, target, draft, prompts, tokens, args, two_cpus, say)

    drafters = replay_drafters(tables, fallback) if tables else None
    capacity, saturated_outputs = saturate(
        server_args, tmp, draft, prompts, tokens, args, drafters, tables and tables.eos_ids, say
    )
    lossless = (
        single["outputs"]["dsd"] == references
        and saturated_outputs == references * SATURATION_EDGES * 2
    )
    budget = "2 threads over CPUs 0-1" if two_cpus else "1 thread, the one CPU"
    result = {
        "model_pair": f"{target.name} / {draft.name}",
        "gamma": args.gamma,
        "tokens_per_request": tokens,
        "prompts": len(prompts),
        "threads": {"target": 1, "edge": 1, "pinned": two_cpus},
        "core_budget": {
            "dsd": "edge 1 thread on CPU 0, target 1 thread on CPU 1"
            if two_cpus
            else "edge and target 1 thread each, one CPU",
            "hf_assisted": budget,
        },
        "spin_ms": args.spin_ms,
        "batching_max_wait_ms": args.max_wait_ms,
        "lossless_greedy": lossless,
        "hf_assisted_matches_reference": single["outputs"]["hf"] == references,
        "overhead_ms_p50": float(np.percentile(single["overhead"], 50)),
        "overhead_ms_p95": float(np.percentile(single["overhead"], 95)),
        "repeats": args.repeats,
        "tokens_per_s_dsd": statistics.median(single["dsd_runs"]),
        "tokens_per_s_hf_assisted": statistics.median(single["hf_runs"]),
        "ratio_vs_hf_assisted": statistics.median(single["ratios"]),
        "ratio_vs_hf_assisted_range": [min(single["ratios"]), max(single["ratios"])],
        "acceptance_rate": single["acceptance"],
        "saturation_edges": SATURATION_EDGES,
        "saturation_drafters": "emulated (replay)" if tables else "real",
        "saturation_fallback_rounds": fallback.asked,
        "batched_wall_throughput_ratio": capacity[SATURATED_BATCH][1] / capacity[1][1],
        "saturated_wall_tokens_per_s": {
            "batched": capacity[SATURATED_BATCH][1],
            "batch_1": capacity[1][1],
        },
        "batched_compute_throughput_ratio": capacity[SATURATED_BATCH][0] / capacity[1][0],
        "server_tokens_per_compute_s": {
            "batched": capacity[SATURATED_BATCH][0],
            "batch_1": capacity[1][0],
        },
        "logs": str(tmp),
    }
    if not args.json:
        for key, value in result.items():
            say(f"  {key}: {value}")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
