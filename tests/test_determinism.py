"""The flip-rate measurement: rows re-verified against the decoded text, alone and batched."""

from __future__ import annotations

import json

import pytest
from cli import run_script

from runtime.determinism import batch_flips, fed_predictions, feed_flips, flip_rate, verified_tokens
from runtime.models import make_draft
from runtime.profile import target_greedy

TEXTS = ["one prompt", "and another one", "a third, longer prompt than the others"]


def test_a_flip_is_a_differing_position_past_the_prefill_token() -> None:
    counted = flip_rate([[1, 2, 3, 4], [5, 6, 7]], [[9, 2, 0, 4], [5, 6, 7]])
    assert counted == {"positions": 5, "flips": 1, "rate": 0.2, "prompts_with_a_flip": 1}


def test_verified_rows_reproduce_the_decoded_text_where_there_are_no_near_ties(tiny_target) -> None:
    """The tiny random model has no near-ties, so every shape must give the decoded text back:
    an off-by-one in which logits predict which position would not."""
    prompts = [tiny_target.encode_prompt(text) for text in TEXTS]
    texts = [target_greedy(tiny_target, prompt, 23) for prompt in prompts]
    for width, batch in ((1, 1), (5, 1), (4, 2), (3, 3)):
        assert verified_tokens(tiny_target, prompts, texts, width, batch) == texts
    # a text that is not the model's own is not reproduced
    noise = [
        [(31 * i + 7 * len(text)) % tiny_target.vocab_size for i in range(23)] for text in texts
    ]
    assert flip_rate(noise, verified_tokens(tiny_target, prompts, noise, 5, 2))["rate"] > 0.9


def test_batch_flips_reports_every_batch_size(tiny_target) -> None:
    prompts = [tiny_target.encode_prompt(text) for text in TEXTS]
    texts = [target_greedy(tiny_target, prompt, 12) for prompt in prompts]
    result = batch_flips(tiny_target, prompts, texts, 5, [1, 2, 3])
    assert set(result["batched"]) == {2, 3} and result["window"]["positions"] == 3 * 11
    assert all(flips["rate"] == 0.0 for flips in result["batched"].values())


def test_a_draft_fed_one_token_at_a_time_predicts_as_it_decodes(tiny_target) -> None:
    prompts = [tiny_target.encode_prompt(text) for text in TEXTS]
    texts = [target_greedy(tiny_target, prompt, 16) for prompt in prompts]
    # the target's own text is its own one-token prediction, position after position
    for prompt, text in zip(prompts, texts, strict=True):
        assert fed_predictions(tiny_target, prompt, text, 1) == text[1:]
        assert fed_predictions(tiny_target, prompt, text, 2) == text[1:]  # float: no flips
    counted = feed_flips(make_draft("int8", tiny_target), prompts, texts)
    assert counted["positions"] == 3 * 15 and 0.0 <= counted["rate"] < 0.2


@pytest.mark.slow
def test_the_benchmark_prints_a_table_and_json() -> None:
    result = run_script(
        "bench_batch_flips.py", "--tiny", "--tokens", "12", "--batches", "1,2", "--draft", "int8"
    )
    assert result.returncode == 0, result.stderr
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    assert figures["window"]["positions"] == 12 * 11 and "2" in figures["batched"]
    assert figures["draft"]["two_tokens_fed"]["positions"] == 12 * 11
    assert "batch 2 vs batch 1" in result.stdout and "draft: two tokens" in result.stdout
    bad = run_script("bench_batch_flips.py", "--tiny", "--batches", "0,x")
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
