"""Microbenchmarks of a model pair: what the simulator's compute and acceptance models read.

A profile holds, measured on this machine with the thread and CPU settings recorded in it:
draft step time vs context; target prefill time vs prompt length; target verify time over
batch size x tokens per row x context; per-position acceptance (the probability that draft
token i is accepted given tokens 0..i-1 were) on a prompt set; and message sizes as the
protocol encodes them. The simulator is calibrated from these alone, never from the
end-to-end runs it is compared with.
"""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from functools import partial
from typing import Any

import torch

from runtime.determinism import fed_predictions, predictions_and_continuations
from runtime.drafting import DraftState
from runtime.kvcache import Row, crop_to, forward_one, forward_rows, new_cache
from runtime.machine import fingerprint
from runtime.message_sizes import message_sizes
from runtime.models import LoadedModel
from runtime.profile_store import PROFILE_VERSION
from runtime.sampling import SamplingParams

STEP_GAMMA = 4


Clock = Callable[[], float]


def _timed(step: Callable[[], object], repeats: int, clock: Clock = time.perf_counter) -> float:
    """Median time of ``step`` in ms (one untimed warm-up first)."""
    step()
    times = []
    for _ in range(repeats):
        start = clock()
        step()
        times.append((clock() - start) * 1000.0)
    return statistics.median(times)


def _filled_cache(model: LoadedModel, length: int, seed: int) -> Any:
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, model.vocab_size, (length,), generator=generator).tolist()
    cache = new_cache()
    forward_one(model.model, cache, ids, 1)
    return cache


def draft_step_ms(
    draft: LoadedModel, contexts: Iterable[int], repeats: int, clock: Clock = time.perf_counter
) -> list[dict]:
    """Draft time at each context, timed as the edge drafts: ``DraftState.propose`` rounds.
    A round's first token costs more than the others: the cache is cropped to the committed
    tokens and what the last verdict committed is fed with it, one token after a rejection
    (the correction; ``first_ms``) or two after a fully accepted round (its last drafted
    token and the bonus token, in one forward; ``first_after_accept_ms``). ``ms`` is each
    further token, from rounds of ``STEP_GAMMA``."""
    out = []
    generator = torch.Generator().manual_seed(7)
    for context in contexts:
        committed = torch.randint(0, draft.vocab_size, (context,), generator=generator).tolist()
        drafter = DraftState(draft, SamplingParams(), seed=0)
        drafter.prefill(committed[:-1])
        times: dict[str, list[float]] = {"rejected": [], "accepted": [], "long": []}
        # after "rejected" the round is accepted in full (two tokens to feed next); after
        # "accepted" and "long", rejected at once (one token to feed next)
        rounds = (("rejected", 1, 1), ("accepted", 1, 0), ("long", STEP_GAMMA, 0))
        for repeat in range(repeats + 1):
            for kind, gamma, accepted in rounds:
                start = clock()
                proposal = drafter.propose(committed, gamma)
                if repeat:  # the first pass warms up
                    times[kind].append((clock() - start) * 1000.0)
                drafter.accept(accepted)
                committed.extend([*proposal.tokens[:accepted], proposal.tokens[0]])
        first = statistics.median(times["rejected"])
        rest = (statistics.median(times["long"]) - first) / (STEP_GAMMA - 1)
        out.append(
            {
                "context": context,
                "first_ms": first,
                "first_after_accept_ms": statistics.median(times["accepted"]),
                "ms": max(rest, 0.0),
            }
        )
    return out


def _prefill_fresh(model: LoadedModel, ids: list[int]) -> torch.Tensor:
    return forward_one(model.model, new_cache(), ids, 1)


def prefill_ms(
    model: LoadedModel, lengths: Iterable[int], repeats: int, clock: Clock = time.perf_counter
) -> list[dict]:
    """Prefill time (a fresh cache, the whole prompt in one forward) for each prompt length."""
    out = []
    for length in lengths:
        ids = list(range(1, length + 1))
        ms = _timed(partial(_prefill_fresh, model, ids), repeats, clock)
        out.append({"prompt_tokens": length, "ms": ms})
    return out


def prompt_lengths(model: LoadedModel, texts: list[str]) -> dict[str, Any]:
    """How prompt text becomes tokens (chat template included), so that the simulator can size
    any prompt file's prompts without a tokenizer: tokens ~= template + characters / ratio."""
    template = len(model.encode_prompt(""))
    measured = {text: len(model.encode_prompt(text)) for text in texts}
    chars = sum(len(text) for text in measured)
    content_tokens = max(1, sum(measured.values()) - template * len(measured))
    return {
        "template_tokens": template,
        "chars_per_token": chars / content_tokens,
        "measured": measured,
    }


def row_lengths(batch: int, context: int, unequal: bool) -> list[int]:
    """The cache length of each row of a timed batch: all ``context``, or (``unequal``)
    from ``context`` down to about half of it, as a server's sessions differ."""
    return [
        context - (row * context) // (2 * batch) if unequal else context for row in range(batch)
    ]


def verify_ms(
    target: LoadedModel,
    batches: Iterable[int],
    tokens: Iterable[int],
    contexts: Iterable[int],
    repeats: int,
    clock: Clock = time.perf_counter,
    tick: Callable[[], None] = lambda: None,
    unequal: bool = False,
) -> list[dict[str, float]]:
    """Batched verification time over the grid (every row: ``tokens`` new tokens; the rows'
    caches as long as ``context``, or with ``unequal`` of ``row_lengths``' unequal lengths,
    left-padded to the longest as the server pads them); ``tick`` is called after each
    point."""
    grid = []
    for context in contexts:
        for batch in batches:
            lengths = row_lengths(batch, context, unequal)
            caches = [
                _filled_cache(target, length, context * 31 + row)
                for row, length in enumerate(lengths)
            ]
            for count in tokens:

                def step(
                    caches: list = caches, count: int = count, lengths: list = lengths
                ) -> None:
                    forward_rows(target.model, [Row(c, [1] * count) for c in caches])
                    for cache, length in zip(caches, lengths, strict=True):
                        crop_to(cache, length)

                grid.append(
                    {
                        "batch": batch,
                        "tokens": count,
                        "context": context,
                        "ms": _timed(step, repeats, clock),
                    }
                )
                tick()
    return grid


PROBE = {"context": 64, "batch": 1, "tokens": 5, "repeats": 5}
# the target is also probed at these row widths: verifications of other widths drift apart
PROBE_WIDTHS = (1, 2, 3, 4, 5)
# and at a batch of this many rows of the narrowest and the widest: rows of a batch drift
# apart too (three one-token rows read 0.80 of the grid's price while one read 0.64)
PROBE_BATCH = 4
# and at a prefill of this many prompt tokens: a prefill's speed drifts apart from a
# verification's (here 0.9-1.1 of the grid's price while a 1x5 verification read 1.2)
PROBE_PROMPT_TOKENS = 40


def unequal_rows_cost(
    target: LoadedModel, repeats: int, alternations: int = 3, clock: Clock = time.thread_time
) -> dict[str, Any]:
    """What rows of unequal cache lengths add to a batched verification: a batch of
    ``PROBE_BATCH`` such rows (``row_lengths``) over one of equal rows at the same longest
    context (the probe's), per width of ``PROBE_WIDTHS``' narrowest and widest, the median
    of ``alternations`` alternated pairs. The grid's rows are equal; a server's never are,
    and padding them costs 3-8 % here."""
    batch, context = PROBE_BATCH, PROBE["context"]
    widths = [min(PROBE_WIDTHS), max(PROBE_WIDTHS)]
    by_tokens = {}
    for width in widths:
        ratios = []
        for _ in range(alternations):
            equal, unequal = (
                verify_ms(target, [batch], [width], [context], repeats, clock, unequal=flag)[0]
                for flag in (False, True)
            )
            ratios.append(unequal["ms"] / equal["ms"])
        by_tokens[str(width)] = statistics.median(ratios)
    return {
        "batch": batch,
        "context": context,
        "lengths": row_lengths(batch, context, True),
        "by_tokens": by_tokens,
        "ratio": statistics.mean(by_tokens.values()),
    }


def draft_round_cpu_ms(draft: LoadedModel, context: int, repeats: int) -> float:
    """CPU time of a round of ``STEP_GAMMA`` draft tokens at ``context``."""
    point = draft_step_ms(draft, [context], repeats, time.thread_time)[0]
    return point["first_ms"] + (STEP_GAMMA - 1) * point["ms"]


def verify_cpu_ms(target: LoadedModel, repeats: int) -> float:
    """CPU time of a verification of the probe's shape (``PROBE``)."""
    batch, tokens, context = PROBE["batch"], PROBE["tokens"], PROBE["context"]
    return verify_ms(target, [batch], [tokens], [context], repeats, time.thread_time)[0]["ms"]


def speed_probe(model: LoadedModel, role: str, repeats: int = PROBE["repeats"]) -> dict[str, Any]:
    """Ops of the profile's grid timed here and now, in the thread's CPU time: over the
    grid's own price of each op (``emulator.sim.calibration.grid_ms``) it says how much
    faster or slower this process computes than when the profile was made (a virtual
    machine's speed wanders, by up to 30 % between back-to-back probes here). CPU time, so
    that a CPU quota's waits and a watch's preemptions do not count. ``role``: the draft
    times a round of ``STEP_GAMMA`` tokens, the target one verification of
    ``PROBE["tokens"]`` (``ms``), one of each of ``PROBE_WIDTHS`` (``by_tokens``), a batch
    of ``PROBE_BATCH`` rows of the narrowest and of the widest (``batched``; and the same
    with rows of unequal lengths, ``unequal_by_tokens``) and a prefill
    of ``PROBE_PROMPT_TOKENS`` (``prefill_ms``); each the median of ``repeats`` timings."""
    context = PROBE["context"]
    if role == "draft":
        ms = draft_round_cpu_ms(model, context, repeats)
        return {"role": role, "context": context, "gamma": STEP_GAMMA, "ms": ms}
    batch, tokens = PROBE["batch"], PROBE["tokens"]
    widths = sorted({tokens, *PROBE_WIDTHS})
    points = verify_ms(model, [batch], widths, [context], repeats, time.thread_time)
    by_tokens = {str(p["tokens"]): p["ms"] for p in points}
    rows, unequal = (
        verify_ms(
            model,
            [PROBE_BATCH],
            [widths[0], widths[-1]],
            [context],
            repeats,
            time.thread_time,
            unequal=flag,
        )
        for flag in (False, True)
    )
    prefill = prefill_ms(model, [PROBE_PROMPT_TOKENS], repeats, time.thread_time)[0]
    return {
        "role": role,
        "context": context,
        "batch": batch,
        "tokens": tokens,
        "ms": by_tokens[str(tokens)],
        "by_tokens": by_tokens,
        "batched": {
            "batch": PROBE_BATCH,
            "by_tokens": {str(p["tokens"]): p["ms"] for p in rows},
            "unequal_by_tokens": {str(p["tokens"]): p["ms"] for p in unequal},
        },
        "prompt_tokens": prefill["prompt_tokens"],
        "prefill_ms": prefill["ms"],
    }


def target_greedy(target: LoadedModel, prompt: list[int], tokens: int) -> list[int]:
    """The target's own greedy output, fed one token at a time (as cloud-only decodes)."""
    cache = new_cache()
    outputs = [int(forward_one(target.model, cache, list(prompt), 1)[-1].argmax())]
    while len(outputs) < tokens:
        outputs.append(int(forward_one(target.model, cache, [outputs[-1]], 1)[-1].argmax()))
    return outputs


def draft_matches(draft: LoadedModel, prompt: list[int], outputs: list[int]) -> list[bool]:
    """Whether the draft's greedy token equals ``outputs`` (the target's) at each position,
    the draft fed the target's output one step at a time; position 0 is the target's
    prefill token, never drafted."""
    return _hits(fed_predictions(draft, prompt, outputs, 1), outputs)


def draft_matches_after_accept(
    draft: LoadedModel, prompt: list[int], outputs: list[int]
) -> list[bool]:
    """Like ``draft_matches``, but each position predicted as a round's first draft token
    after a fully accepted round: the two tokens before it fed in one forward. A quantised
    draft quantises each forward's activations as a whole, so this can differ from the
    one-token prediction at a near-tie (``runtime.determinism``)."""
    return _hits(fed_predictions(draft, prompt, outputs, 2), outputs)


def _hits(predicted: list[int], outputs: list[int]) -> list[bool]:
    return [False, *(guess == token for guess, token in zip(predicted, outputs[1:], strict=True))]


def _replay_fed_two(
    draft: LoadedModel, prompt: list[int], output: Future[list[int]], gamma: int
) -> dict[str, Any]:
    return draft_replay(draft, prompt, output.result(), gamma, 2)


def draft_replay(
    draft: LoadedModel, prompt: list[int], outputs: list[int], gamma: int, feed: int
) -> dict[str, Any]:
    """What an emulated edge replays (``runtime.replay_draft``) along the target's greedy
    ``outputs``: the draft's token at each position as a round's first token fed ``feed``
    tokens (or as a round's further token, fed one), and where that misses, the draft's
    own continuation up to a window of ``gamma``. Position 0 is the target's (-1)."""
    predicted, continued = predictions_and_continuations(draft, prompt, outputs, feed, gamma - 1)
    return {
        "draft_ids": [-1, *predicted],
        "continuations": {str(position): ids for position, ids in continued.items()},
    }


def greedy_matches(
    target: LoadedModel, draft: LoadedModel, prompt: list[int], tokens: int
) -> list[bool]:
    """Whether the draft's greedy token equals the target's at each output position, the
    draft fed the target's own output one step at a time. Under greedy verification the
    output is the target's whatever γ is, so these fix every round: a round starting at
    position i accepts the run of matches from i (position 0 is the target's prefill token,
    never drafted). Up to numerics: a forward of several tokens (the draft after a fully
    accepted round) or of several rows (a batched verify) can flip a near-tie."""
    return draft_matches(draft, prompt, target_greedy(target, prompt, tokens))


def window_counts(matches: list[bool], gamma: int) -> tuple[list[int], list[int]]:
    """Rounds of window ``gamma`` over one prompt's matches: per draft position, how many
    rounds reached it and how many accepted it."""
    reached, accepted = [0] * gamma, [0] * gamma
    position = 1
    while position < len(matches):
        run = 0
        while run < gamma and position + run < len(matches) and matches[position + run]:
            run += 1
        for index in range(min(run + 1, gamma)):
            reached[index] += 1
            accepted[index] += index < run
        position += run + 1
    return reached, accepted


def _prompt_acceptance(
    prompt: list[int],
    outputs: list[int],
    one: dict[str, Any],
    two: dict[str, Any],
    gamma: int,
) -> dict[str, Any]:
    """One prompt's entry of ``acceptance``: its counts, its matches and its replay tables."""
    matches = _hits(one["draft_ids"][1:], outputs)
    prompt_reached, prompt_accepted = window_counts(matches, gamma)
    return {
        "reached": prompt_reached,
        "accepted": prompt_accepted,
        "matches": "".join("1" if hit else "0" for hit in matches),
        "matches_after_accept": "".join(
            "1" if hit else "0" for hit in _hits(two["draft_ids"][1:], outputs)
        ),
        "replay": {
            "prompt_ids": list(prompt),
            "target_ids": list(outputs),
            "one_step": one,
            "after_accept": two,
        },
    }


def acceptance(
    target: LoadedModel,
    draft: LoadedModel,
    prompts: list[list[int]],
    gamma: int,
    tokens: int,
    tick: Callable[[], None] = lambda: None,
) -> dict[str, Any]:
    """Greedy acceptance: per prompt the matches (as a string of 0/1; also
    ``matches_after_accept``, each position as the first draft token after a fully
    accepted round), the counts of rounds of window ``gamma`` and the tables an emulated
    edge replays (``draft_replay``: the draft's tokens along the target's output); pooled,
    a[i] = P(draft token i accepted | 0..i-1 were). ``tick`` is called after each prompt. The target
    decodes the next prompts in one thread while the draft follows in two (torch computes
    outside the GIL): faster where the process may use two cores, and the same matches,
    which do not depend on timing."""
    reached, accepted_at = [0] * gamma, [0] * gamma
    per_prompt = []
    with ThreadPoolExecutor(max_workers=1) as decoding, ThreadPoolExecutor(1) as after_accept:
        outputs = [decoding.submit(target_greedy, target, prompt, tokens) for prompt in prompts]
        fed_two = [
            after_accept.submit(_replay_fed_two, draft, prompt, output, gamma)
            for prompt, output in zip(prompts, outputs, strict=True)
        ]
        for prompt, output, two in zip(prompts, outputs, fed_two, strict=True):
            one = draft_replay(draft, prompt, output.result(), gamma, 1)
            per_prompt.append(_prompt_acceptance(prompt, output.result(), one, two.result(), gamma))
            tick()
    for counts in per_prompt:
        reached = [a + b for a, b in zip(reached, counts["reached"], strict=True)]
        accepted_at = [a + b for a, b in zip(accepted_at, counts["accepted"], strict=True)]
    per_position = [a / r if r else None for a, r in zip(accepted_at, reached, strict=True)]
    drafted = gamma * reached[0] if reached else 0
    return {
        "gamma": gamma,
        "per_position": per_position,
        "overall": sum(accepted_at) / drafted if drafted else None,
        "rounds": reached[0] if reached else 0,
        "drafted": drafted,
        "per_prompt": per_prompt,  # in the order of ``prompts``
    }


Progress = Callable[[str, int, int], None]


def profile_pair(
    target: LoadedModel,
    draft: LoadedModel,
    texts: list[str],
    grid: dict[str, list[int]],
    gamma: int = 8,
    tokens: int = 64,
    repeats: int = 5,
    conditions: dict[str, Any] | None = None,
    progress: Progress = lambda step, done, total: None,
    acceptance_cpus: set[int] | None = None,
) -> dict[str, Any]:
    """Measure everything a profile holds on the prompt ``texts``; ``grid`` names the sizes.
    ``progress(step, done, total)`` counts measurements (grid points, prompts).
    Once the timings are done, the acceptance runs may use ``acceptance_cpus`` (matches
    do not depend on the core; the timings are taken where the caller pinned the process)."""
    prompts = [target.encode_prompt(text) for text in texts]
    points = len(grid["batches"]) * len(grid["tokens"]) * len(grid["contexts"])
    # 2 prefill sets, unequal rows, 2 steps of acceptance; a point, a prompt
    total = 5 + points + len(prompts)
    done = 0

    def step(name: str, count: int = 1) -> None:
        nonlocal done
        done += count
        progress(name, done, total)

    progress("draft step and prefill time", 0, total)
    # The draft's times in CPU time: an edge's CPU quota charges CPU time, and the probes
    # that scale them are CPU time too (wall time ran 17-29 % above it here, for the int8
    # draft, while the machine was stolen from)
    draft_steps = draft_step_ms(draft, grid["contexts"], repeats, time.thread_time)
    draft_prefills = prefill_ms(draft, grid["prompt_lengths"], repeats, time.thread_time)
    step("target prefill time")
    prefills = prefill_ms(target, grid["prompt_lengths"], repeats)
    step("target verify time grid")
    verifies = verify_ms(
        target,
        grid["batches"],
        grid["tokens"],
        grid["contexts"],
        repeats,
        tick=lambda: step("target verify time grid"),
    )
    step("target verify time, rows of unequal lengths")
    unequal_rows = unequal_rows_cost(target, repeats)
    step("acceptance (greedy matches per prompt)", 2)
    if acceptance_cpus:
        os.sched_setaffinity(0, acceptance_cpus)
    accepted = acceptance(
        target, draft, prompts, gamma, tokens, tick=lambda: step("acceptance (greedy matches)")
    )
    accepted["per_prompt"] = dict(zip(texts, accepted["per_prompt"], strict=True))
    # what an emulated edge needs beside each prompt's tables (``runtime.replay_draft``)
    replay = {"gamma": gamma, "eos_ids": sorted(draft.eos_ids)}
    return {
        "version": PROFILE_VERSION,
        "pair": {"target": target.name, "draft": draft.name},
        "conditions": {
            "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "machine": platform.machine(),
            "processor": platform.processor(),
            "measured": time.strftime("%Y-%m-%d %H:%M:%S"),
            "fingerprint": fingerprint(torch.get_num_threads()),
            **(conditions or {}),
        },
        "draft_step_ms": draft_steps,
        "draft_prefill_ms": draft_prefills,
        "target_prefill_ms": prefills,
        "verify_ms": verifies,
        "unequal_rows": unequal_rows,
        "acceptance": accepted,
        "replay": replay,
        "message_bytes": message_sizes(range(0, 9), 16),
        "prompts": prompt_lengths(target, texts),
    }
