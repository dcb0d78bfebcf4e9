"""How often does the shape of a forward pass flip the target's greedy token? Prints a table
and, as its last line, one JSON object.

    python scripts/bench_batch_flips.py                 # default pair: 12 prompts x 256 tokens
    python scripts/bench_batch_flips.py --tiny --tokens 32 --batches 1,2,4

Each prompt's greedy text (decoded one token at a time, as cloud-only decoding does) is
verified again in rows of γ+1 tokens, as the target verifies a draft, alone and batched
with the other prompts' rows (left-padded, as the server batches). A flip is a position
whose argmax differs. One torch thread, pinned to the last CPU (as the emulator runs the
target).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

from runtime.arguments import positive_int
from runtime.determinism import batch_flips, feed_flips
from runtime.models import ModelError, load_model, make_draft
from runtime.process import configure
from runtime.profile import target_greedy
from runtime.prompts import DEFAULT_PROMPTS


def batch_sizes(text: str) -> list[int]:
    try:
        sizes = sorted({int(part) for part in text.split(",")})
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected batch sizes like 1,2,4,8, got {text}") from None
    if not sizes or sizes[0] < 1:
        raise argparse.ArgumentTypeError(f"batch sizes must be at least 1, got {text}")
    return sizes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--target", default="smollm2", help="target model spec")
    parser.add_argument("--tiny", action="store_true", help="the tiny random target")
    parser.add_argument("--prompts", type=positive_int, default=len(DEFAULT_PROMPTS))
    parser.add_argument("--tokens", type=positive_int, default=256, help="tokens per prompt")
    parser.add_argument("--width", type=positive_int, default=5, help="tokens per row (γ+1)")
    parser.add_argument("--batches", type=batch_sizes, default=list(range(1, 9)))
    parser.add_argument(
        "--draft",
        help="also a draft spec (e.g. int8): how often feeding two tokens in one forward (a\n"
        "draft's first step after a fully accepted round) changes its greedy prediction",
    )
    parser.add_argument("--json", action="store_true", help="(the last line is JSON anyway)")
    args = parser.parse_args(argv)
    started = time.monotonic()

    def say(step: str) -> None:
        print(f"flips: {time.monotonic() - started:6.1f} s  {step}", file=sys.stderr, flush=True)

    try:
        configure(1, [max(os.sched_getaffinity(0))])
        target = load_model("tiny" if args.tiny else args.target)
        draft = make_draft(args.draft, target) if args.draft else None
    except (ModelError, ValueError) as exc:
        print(f"flips: error: {exc}", file=sys.stderr)
        return 2
    texts = [DEFAULT_PROMPTS[i % len(DEFAULT_PROMPTS)] for i in range(args.prompts)]
    prompts = [target.encode_prompt(text) for text in texts]
    say(f"decoding {len(prompts)} prompts x {args.tokens} tokens one token at a time")
    texts = [target_greedy(target, prompt, args.tokens) for prompt in prompts]
    result = {
        "model": target.name,
        **batch_flips(target, prompts, texts, args.width, args.batches, say),
    }
    if draft is not None:
        say(f"feeding {draft.name} one and two tokens per forward along the same texts")
        result["draft"] = {"model": draft.name, "two_tokens_fed": feed_flips(draft, prompts, texts)}
    result["wall_s"] = round(time.monotonic() - started, 1)
    rows = [(f"rows of {args.width} vs one token at a time", result["window"])]
    rows += [(f"batch {batch} vs batch 1", flips) for batch, flips in result["batched"].items()]
    if draft is not None:
        rows.append(("draft: two tokens fed vs one", result["draft"]["two_tokens_fed"]))
    print(f"{'compared':<40}{'positions':>10}{'flips':>7}{'rate':>9}{'prompts':>9}")
    for label, flips in rows:
        print(
            f"{label:<40}{flips['positions']:>10}{flips['flips']:>7}"
            f"{flips['rate'] * 100:>8.2f}%{flips['prompts_with_a_flip']:>9}"
        )
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
