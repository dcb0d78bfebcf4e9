"""Benchmark the DSD runtime on loopback: losslessness, overhead, speed vs transformers, batching.

The target server runs as its own process (1 torch thread, pinned to CPU 1 where there are
two); edges run in this process (1 torch thread, pinned to CPU 0). Prints one JSON object
as its last line.

    python scripts/bench_runtime.py --json          # default pair (SmolLM2-135M + int8 draft)
    python scripts/bench_runtime.py --tiny --json   # tiny random pair, < 60 s
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import torch

from runtime.draft import EdgeClient
from runtime.events import EventLog, read_events
from runtime.models import LoadedModel, load_model, make_draft
from runtime.policies import Fixed
from runtime.process import configure
from runtime.prompts import DEFAULT_PROMPTS
from runtime.serverproc import ServerProcess

EDGES_FOR_BATCHING = 4


def pair(tiny: bool) -> tuple[str, str]:
    return ("tiny", "perturbed:0.3") if tiny else ("smollm2", "int8")


def reference_greedy(target: LoadedModel, prompt: list[int], tokens: int) -> list[int]:
    """The target's own greedy decode, by transformers' generate (independent of our code)."""
    ids = torch.tensor([prompt])
    out = target.model.generate(
        ids,
        attention_mask=torch.ones_like(ids),
        do_sample=False,
        max_new_tokens=tokens,
        min_new_tokens=tokens if not target.eos_ids else 0,
        pad_token_id=0,
    )
    result = out[0, len(prompt) :].tolist()
    for index, token in enumerate(result):
        if token in target.eos_ids:
            return result[: index + 1]
    return result


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
    draft: LoadedModel,
    prompts: list[list[int]],
    tokens: int,
    gamma: int,
    edges: int,
    log: EventLog,
    spin_ms: float = 0.0,
) -> list[list[int]]:
    """Run ``edges`` concurrent closed-loop edges, each serving every prompt once."""
    outputs: dict[tuple[int, int], list[int]] = {}
    errors: list[BaseException] = []

    def edge(index: int) -> None:
        client = EdgeClient(
            endpoint, draft, f"edge{index}", Fixed(gamma), log=log, timeout_s=300, spin_ms=spin_ms
        )
        try:
            for number, prompt in enumerate(prompts):
                outputs[(index, number)] = client.run(prompt, tokens).output_ids
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


def server_capacity(server_log: Path, edge_events: list[dict]) -> tuple[float, float]:
    """(tokens per second of target compute, tokens per wall second) for one run."""
    batches = [e for e in read_events(server_log) if e["event"] == "batch"]
    busy_s = sum(b["verify_ms"] for b in batches) / 1000.0
    requests = [e for e in edge_events if e["event"] == "request"]
    tokens = sum(r["output_tokens"] for r in requests)
    wall = max(r["t_done"] for r in requests) - min(r["t_arrival"] for r in requests)
    return tokens / busy_s, tokens / wall


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
        default=None,
        help="how long the batched server waits for peers (default: 20 tiny, 250 default pair)",
    )
    args = parser.parse_args(argv)
    tokens = args.tokens or (48 if args.tiny else 64)
    max_wait_ms = args.max_wait_ms if args.max_wait_ms is not None else (20 if args.tiny else 250)
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

    say(
        f"pair {target.name} / {draft.name}, γ={args.gamma}, "
        f"{tokens} tokens, {len(prompts)} prompts"
    )
    references = [reference_greedy(target, p, tokens) for p in prompts]
    tmp = Path(tempfile.mkdtemp(prefix="bench-runtime-"))

    say("1 edge, DSD over loopback ...")
    single_log = EventLog(tmp / "edge-single.jsonl", "bench", keep=True)
    with ServerProcess(server_args, tmp / "target-single.jsonl") as server:
        dsd_outputs = run_edges(
            server.endpoint, draft, prompts, tokens, args.gamma, 1, single_log, args.spin_ms
        )
    rounds = [e for e in single_log.events if e["event"] == "round"]
    requests = [e for e in single_log.events if e["event"] == "request"]
    overhead = [(r["t_recv"] - r["t_send"]) * 1000.0 - r["verify_ms"] for r in rounds]
    dsd_tps = sum(r["output_tokens"] for r in requests) / sum(
        r["t_done"] - r["t_arrival"] for r in requests
    )
    acceptance = sum(r["accepted"] for r in rounds) / max(1, sum(r["drafted"] for r in rounds))

    say("transformers assisted generation, same pair and γ, one process ...")
    hf_tps, hf_outputs = hf_assisted(target, draft, prompts, tokens, args.gamma)

    capacity = {}
    batched_lossless = True
    for max_batch in (EDGES_FOR_BATCHING, 1):
        say(f"{EDGES_FOR_BATCHING} edges, max batch {max_batch} ...")
        log = EventLog(tmp / f"edges-b{max_batch}.jsonl", "bench", keep=True)
        server_log = tmp / f"target-b{max_batch}.jsonl"
        batching = ["--max-batch", str(max_batch), "--max-wait-ms", str(max_wait_ms)]
        with ServerProcess([*server_args, *batching], server_log) as server:
            outs = run_edges(
                server.endpoint, draft, prompts, tokens, args.gamma, EDGES_FOR_BATCHING, log
            )
        capacity[max_batch] = server_capacity(server_log, log.events)
        expected = references * EDGES_FOR_BATCHING
        batched_lossless = batched_lossless and outs == expected

    lossless = dsd_outputs == references and batched_lossless
    result = {
        "model_pair": f"{target.name} / {draft.name}",
        "gamma": args.gamma,
        "tokens_per_request": tokens,
        "prompts": len(prompts),
        "threads": {"target": 1, "edge": 1, "hf_assisted": 1, "pinned": two_cpus},
        "spin_ms": args.spin_ms,
        "batching_max_wait_ms": max_wait_ms,
        "lossless_greedy": lossless,
        "hf_assisted_matches_reference": hf_outputs == references,
        "overhead_ms_p50": float(np.percentile(overhead, 50)),
        "overhead_ms_p95": float(np.percentile(overhead, 95)),
        "tokens_per_s_dsd": dsd_tps,
        "tokens_per_s_hf_assisted": hf_tps,
        "ratio_vs_hf_assisted": dsd_tps / hf_tps,
        "acceptance_rate": acceptance,
        "batched_throughput_ratio": capacity[EDGES_FOR_BATCHING][0] / capacity[1][0],
        "batched_wall_throughput_ratio": capacity[EDGES_FOR_BATCHING][1] / capacity[1][1],
        "server_tokens_per_compute_s": {
            "batched": capacity[EDGES_FOR_BATCHING][0],
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
