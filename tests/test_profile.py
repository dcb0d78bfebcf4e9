"""Profiles of model pairs: what the simulator is calibrated from."""

from __future__ import annotations

import itertools
import os

import pytest
from cli import run_script

from runtime import interference
from runtime.drafting import DraftState
from runtime.message_sizes import message_sizes
from runtime.models import make_draft
from runtime.profile import (
    PROBE_BATCH,
    PROBE_PROMPT_TOKENS,
    PROBE_WIDTHS,
    STEP_GAMMA,
    acceptance,
    draft_matches_after_accept,
    greedy_matches,
    profile_pair,
    row_lengths,
    speed_probe,
    target_greedy,
    unequal_rows_cost,
    window_counts,
)
from runtime.profile_store import load_profile
from runtime.sampling import SamplingParams

GRID = {"contexts": [16, 48], "prompt_lengths": [8], "batches": [1, 3], "tokens": [1, 4]}


TEXTS = ["one prompt", "and another one"]


@pytest.fixture(scope="module")
def prompts(tiny_target):
    return [tiny_target.encode_prompt(text) for text in TEXTS]


def test_identical_draft_is_always_accepted(tiny_target, prompts) -> None:
    result = acceptance(tiny_target, make_draft("copy", tiny_target), prompts, gamma=4, tokens=20)
    assert result["overall"] == 1.0 and result["per_position"] == [1.0] * 4


def test_disagreeing_draft_is_almost_never_accepted(tiny_target, prompts) -> None:
    draft = make_draft("disagree:1.0", tiny_target)
    result = acceptance(tiny_target, draft, prompts, gamma=4, tokens=20)
    assert result["overall"] < 0.05 and result["rounds"] >= 20


def test_profile_holds_the_whole_grid(tiny_target, tiny_draft, prompts) -> None:
    profile = profile_pair(tiny_target, tiny_draft, TEXTS, GRID, gamma=4, tokens=16, repeats=2)
    points = {(p["batch"], p["tokens"], p["context"]) for p in profile["verify_ms"]}
    assert points == set(itertools.product(GRID["batches"], GRID["tokens"], GRID["contexts"]))
    assert all(p["ms"] > 0 for p in profile["verify_ms"])
    assert [p["context"] for p in profile["draft_step_ms"]] == GRID["contexts"]
    assert [p["prompt_tokens"] for p in profile["draft_prefill_ms"]] == GRID["prompt_lengths"]
    lengths = profile["prompts"]
    assert list(lengths["measured"].values()) == [len(p) for p in prompts]
    assert lengths["chars_per_token"] > 0
    assert 0.0 <= profile["acceptance"]["overall"] <= 1.0
    assert profile["conditions"]["torch_threads"] >= 1


def test_a_profile_records_the_tables_an_emulated_edge_replays(
    tiny_target, tiny_draft, prompts
) -> None:
    """Per prompt: its ids, the target's greedy output, the draft's token at each position
    (the matches are where it equals the output) and, after each miss, the draft's own
    continuation to the window: what a real draft proposes from the same committed text."""
    profile = profile_pair(tiny_target, tiny_draft, TEXTS, GRID, gamma=4, tokens=16, repeats=1)
    assert profile["replay"] == {"gamma": 4, "eos_ids": sorted(tiny_draft.eos_ids)}
    for text, prompt in zip(TEXTS, prompts, strict=True):
        entry = profile["acceptance"]["per_prompt"][text]
        tables = entry["replay"]
        outputs, drafted = tables["target_ids"], tables["one_step"]["draft_ids"]
        assert tables["prompt_ids"] == prompt and outputs == target_greedy(tiny_target, prompt, 16)
        hits = [a == b for a, b in zip(drafted[1:], outputs[1:], strict=True)]
        assert entry["matches"] == "0" + "".join("1" if hit else "0" for hit in hits)
        misses = [str(p) for p, hit in enumerate(hits, start=1) if not hit]
        assert misses and sorted(tables["one_step"]["continuations"], key=int) == misses
        for position in misses[:3]:  # a real draft, fed the same text, continues the same
            real = DraftState(tiny_draft, SamplingParams(), 0)
            real.prefill(prompt + outputs[: int(position) - 1])
            proposal = real.propose(prompt + outputs[: int(position)], 4).tokens
            continued = tables["one_step"]["continuations"][position]
            assert proposal == [drafted[int(position)], *continued]


def test_greedy_matches_fix_each_window_s_acceptance(tiny_target, prompts) -> None:
    """A copy of the target matches everywhere but the prefill token; the counts of rounds
    of any window follow from the matches alone."""
    matches = greedy_matches(tiny_target, make_draft("copy", tiny_target), prompts[0], 12)
    assert matches == [False] + [True] * 11
    reached, accepted = window_counts([False, True, True, False, True, False, True], 2)
    # rounds from position 1: 1-2 (bonus 3), 4 then a miss at 5, 6 (the last position)
    assert reached == [3, 3] and accepted == [3, 1]


def test_matches_after_a_full_accept_feed_two_tokens_and_are_recorded(tiny_target, prompts) -> None:
    copy = make_draft("copy", tiny_target)
    outputs = target_greedy(tiny_target, prompts[0], 12)
    assert draft_matches_after_accept(copy, prompts[0], outputs) == [False] + [True] * 11
    disagreeing = make_draft("disagree:1.0", tiny_target)
    assert not any(draft_matches_after_accept(disagreeing, prompts[0], outputs))
    recorded = acceptance(tiny_target, copy, prompts, 4, 12)["per_prompt"]
    assert all(p["matches_after_accept"] == "0" + "1" * 11 for p in recorded)


def test_rows_of_unequal_lengths_span_the_longest_down_to_about_half() -> None:
    assert row_lengths(4, 64, unequal=False) == [64] * 4
    assert row_lengths(4, 64, unequal=True) == [64, 56, 48, 40]
    lengths = row_lengths(8, 256, unequal=True)
    assert lengths[0] == 256 and len(set(lengths)) == 8 and min(lengths) >= 128


def test_a_profile_prices_rows_of_unequal_lengths_against_equal_ones(tiny_target) -> None:
    cost = unequal_rows_cost(tiny_target, repeats=2, alternations=1)
    assert cost["batch"] == PROBE_BATCH and cost["lengths"] == row_lengths(PROBE_BATCH, 64, True)
    assert set(cost["by_tokens"]) == {"1", "5"} and all(r > 0 for r in cost["by_tokens"].values())
    assert cost["ratio"] == pytest.approx(sum(cost["by_tokens"].values()) / 2)


def test_a_speed_probe_times_one_profile_point_in_cpu_time(tiny_target, tiny_draft) -> None:
    draft = speed_probe(tiny_draft, "draft")
    assert draft["role"] == "draft" and draft["gamma"] == STEP_GAMMA and draft["ms"] > 0
    target = speed_probe(tiny_target, "target")
    assert (target["batch"], target["tokens"], target["context"]) == (1, 5, 64)
    assert target["ms"] > 0 and set(target["by_tokens"]) == {str(w) for w in PROBE_WIDTHS}
    assert target["ms"] == target["by_tokens"]["5"]
    assert target["batched"]["batch"] == PROBE_BATCH
    assert set(target["batched"]["by_tokens"]) == {"1", "5"}
    assert set(target["batched"]["unequal_by_tokens"]) == {"1", "5"}
    assert target["prompt_tokens"] == PROBE_PROMPT_TOKENS and target["prefill_ms"] > 0


def test_message_sizes_follow_the_protocol() -> None:
    sizes = message_sizes(range(0, 5), draft_top_k=16)
    greedy = dict(sizes["verify_greedy"])
    sampled = dict(sizes["verify_sampled"])
    assert greedy[4] - greedy[0] == 16  # four int32 token ids
    # ids and probs (4 x 16 x 8 bytes) plus two keys ("q_ids", "q_probs") and two bin headers
    assert sampled[4] - greedy[4] == 4 * 16 * 8 + 6 + 8 + 3 + 3
    assert sizes["verdict"] > 0


@pytest.mark.slow
def test_profile_script_writes_a_loadable_profile(tmp_path) -> None:
    out = tmp_path / "tiny.json"
    result = run_script(
        "profile_models.py", "--tiny", "--repeats", "1", "--tokens", "16", "-o", str(out)
    )
    assert result.returncode == 0, result.stderr[-2000:]
    profile = load_profile(out)
    assert profile["pair"]["target"] == "tiny"
    if (os.cpu_count() or 1) > 1:  # each op timed alone and beside a neighbour on another CPU
        measured = profile["interference"]
        assert set(measured["target"]) == {"beside", "verify"}
        assert set(measured["draft"]) == {"beside", "step"}
        for op in (measured["target"]["verify"], measured["draft"]["step"]):
            assert len(op["ratios"]) == 5 and op["ratio"] == sorted(op["ratios"])[2]
            assert op["resolved"] == (min(op["ratios"]) > 1 or max(op["ratios"]) < 1)
        assert "cross-core interference" in result.stderr
    # a draft round alone and beside 1, then 2, drafters; a verification beside a replica
    for key, op, sharers in (
        ("time_sharing", "a draft round", {"2", "3"}),
        ("target_time_sharing", "a verification", {"2"}),
    ):
        sharing = profile[key]
        assert sharing["op"] == op and set(sharing["sharers"]) == sharers
        assert sharing["alternations"] == 15
        for measured in sharing["sharers"].values():
            ratios = measured["ratios"]
            assert len(ratios) == 15 and measured["ratio"] == sorted(ratios)[7]
            assert measured["resolved"] == interference.resolved(ratios)
        assert f"time-sharing ({op})" in result.stderr
