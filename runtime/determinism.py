"""How often the shape of a forward pass changes the target's greedy token.

Greedy verification is lossless only up to numerics: the target's logits for a position come
from matrix products whose summation order depends on the shape of the pass — how many
tokens a row feeds (a verification of γ+1 tokens against a decode of one) and how many rows
are batched (left-padded to a common length). At a near-tie the argmax can flip, and from
there the text is another one. This measures the flip rate on real text: each prompt's own
greedy output, decoded one token at a time, is re-verified in rounds of ``width`` tokens (as
if the draft had proposed exactly that text), alone and batched with other prompts' rows.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from runtime.kvcache import Row, crop_to, forward_one, forward_rows, new_cache
from runtime.models import LoadedModel


def verified_tokens(
    target: LoadedModel,
    prompts: list[list[int]],
    texts: list[list[int]],
    width: int,
    batch: int,
) -> list[list[int]]:
    """Per prompt, the target's argmax at every position of its ``texts`` entry, computed in
    rounds of ``width`` tokens per row with ``batch`` rows in each forward (the prompts in
    groups of ``batch``, the last group filled up with the first prompts again, whose rows
    there are not counted twice). Position 0 (the prefill's token) is the text's own."""
    count = len(prompts)
    picked: list[list[int] | None] = [None] * count
    for start in range(0, count, batch):
        members = [(start + k) % count for k in range(batch)]
        caches = [new_cache() for _ in members]
        for cache, index in zip(caches, members, strict=True):
            forward_one(target.model, cache, prompts[index], 1)
        chosen: list[list[int]] = [[texts[index][0]] for index in members]
        length = min(len(texts[index]) for index in members)
        for position in range(1, length, width):
            end = min(position + width, length)
            rows = [
                Row(cache, texts[index][position - 1 : end - 1])
                for cache, index in zip(caches, members, strict=True)
            ]
            for row_chosen, logits in zip(chosen, forward_rows(target.model, rows), strict=True):
                row_chosen.extend(int(token) for token in logits.argmax(dim=-1))
        for k, index in enumerate(members):
            if picked[index] is None and k < count - start:
                picked[index] = chosen[k]
    return [row for row in picked if row is not None]


def flip_rate(reference: list[list[int]], other: list[list[int]]) -> dict[str, Any]:
    """Positions whose token differs between two per-prompt token lists (position 0 aside)."""
    positions = flips = prompts_flipped = 0
    for ref, got in zip(reference, other, strict=True):
        differing = sum(a != b for a, b in zip(ref[1:], got[1:], strict=False))
        positions += min(len(ref), len(got)) - 1
        flips += differing
        prompts_flipped += differing > 0
    return {
        "positions": positions,
        "flips": flips,
        "rate": flips / positions if positions else 0.0,
        "prompts_with_a_flip": prompts_flipped,
    }


def fed_predictions(model: LoadedModel, prompt: list[int], text: list[int], feed: int) -> list[int]:
    """The model's greedy token at each position of ``text`` past the first, each predicted
    from a forward that feeds the ``feed`` tokens before it (the cache holds the rest): one
    for a decode step, two for a draft's first step after a fully accepted round."""
    return predictions_and_continuations(model, prompt, text, feed, 0)[0]


def predictions_and_continuations(
    model: LoadedModel, prompt: list[int], text: list[int], feed: int, continuation: int
) -> tuple[list[int], dict[int, list[int]]]:
    """``fed_predictions``, and at each position where the prediction misses ``text`` the
    model's own greedy continuation of ``continuation`` more tokens after its miss, one token
    per forward as a draft continues a round (``runtime.replay_draft`` replays them)."""
    cache = new_cache()
    forward_one(model.model, cache, prompt, 1)
    base = len(prompt)
    predicted: list[int] = []
    continued: dict[int, list[int]] = {}
    for position in range(1, len(text)):
        start = max(0, position - feed)
        crop_to(cache, base + start)
        token = int(forward_one(model.model, cache, text[start:position], 1)[-1].argmax())
        predicted.append(token)
        if token != text[position] and continuation:
            own = [token]
            for _ in range(continuation):
                own.append(int(forward_one(model.model, cache, [own[-1]], 1)[-1].argmax()))
            continued[position] = own[1:]
    return predicted, continued


def feed_flips(
    model: LoadedModel, prompts: list[list[int]], texts: list[list[int]], feed: int = 2
) -> dict[str, Any]:
    """How often feeding ``feed`` tokens in one forward, instead of one, changes the model's
    greedy prediction along the same text (a quantised draft quantises each forward's
    activations as a whole, so the shape matters more than for a float model)."""

    def predictions(count: int) -> list[list[int]]:  # position 0 is the prefill's, not compared
        return [
            [text[0], *fed_predictions(model, prompt, text, count)]
            for prompt, text in zip(prompts, texts, strict=True)
        ]

    return flip_rate(predictions(1), predictions(feed))


def batch_flips(
    target: LoadedModel,
    prompts: list[list[int]],
    texts: list[list[int]],
    width: int,
    batches: Iterable[int],
    progress: Callable[[str], None] = lambda _: None,
) -> dict[str, Any]:
    """The flip rates along the target's own greedy ``texts`` of the ``prompts`` (decoded
    one token at a time: ``runtime.profile.target_greedy``): one-row verification of
    ``width`` tokens against that decoding (``window``), and, per batch size, batched
    against one-row verification (``batched``) and against the decoding
    (``batched_vs_decode``)."""
    progress(f"verifying in rows of {width} tokens, alone")
    alone = verified_tokens(target, prompts, texts, width, 1)
    result: dict[str, Any] = {
        "prompts": len(prompts),
        "tokens": len(texts[0]) if texts else 0,
        "width": width,
        "window": flip_rate(texts, alone),
        "batched": {},
        "batched_vs_decode": {},
    }
    for batch in batches:
        if batch < 2:
            continue
        progress(f"verifying in batches of {batch} rows")
        together = verified_tokens(target, prompts, texts, width, batch)
        result["batched"][batch] = flip_rate(alone, together)
        result["batched_vs_decode"][batch] = flip_rate(texts, together)
    return result
