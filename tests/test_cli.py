"""The runtime's command-line programs as separate processes, as a user runs them."""

from __future__ import annotations

import json

import pytest
from cli import ROOT
from cli import run_command as run

from runtime.events import read_events
from runtime.metrics import summarise
from runtime.serverproc import ServerProcess


@pytest.mark.slow
def test_target_and_draft_processes_serve_requests(tmp_path) -> None:
    target_log, edge_log = tmp_path / "target.jsonl", tmp_path / "edge.jsonl"
    with ServerProcess(["--model", "tiny", "--threads", "1"], target_log) as server:
        result = run(
            f"-m runtime.draft --connect {server.endpoint} --base tiny "
            f"--draft perturbed:0.1 --policy fixed:3 --requests 3 "
            f"--max-new-tokens 12 --log {edge_log}"
        )
    assert result.returncode == 0, result.stderr
    events = read_events(target_log, edge_log)
    summary = summarise(events)
    assert summary["requests"] == 3 and summary["output_tokens"] == 36
    roles = {e["role"] for e in events if e["event"] == "process"}
    assert roles == {"target", "draft:edge0"}  # the server wrote its record on SIGTERM
    target_record = next(e for e in events if e.get("role") == "target")
    assert target_record["counters"]["opened"] == 3 and target_record["torch_threads"] == 1
    table = run(f"{ROOT / 'scripts' / 'summarize.py'} {target_log} {edge_log}")
    assert table.returncode == 0
    assert table.stdout.splitlines()[2].split()[:3] == ["overall", "3", "36"]


@pytest.mark.slow
def test_draft_reports_an_unreachable_server_without_traceback(tmp_path) -> None:
    result = run(
        "-m runtime.draft --connect tcp://127.0.0.1:9 --base tiny --draft copy "
        "--timeout 1 --max-new-tokens 4"
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "no reply from the server within 1 s" in result.stderr


@pytest.mark.parametrize(
    ("program", "option", "complaint"),
    [
        ("runtime.draft", "--deadline -1", "must be a number > 0, got -1"),
        ("runtime.draft", "--timeout 0", "must be a number > 0, got 0"),
        ("runtime.draft", "--retries -2", "must be >= 0, got -2"),
        ("runtime.draft", "--backoff nan", "must be a number >= 0, got nan"),
        ("runtime.draft", "--arrival-rate 0", "must be a number > 0, got 0"),
        ("runtime.target", "--session-timeout 0", "must be a number > 0, got 0"),
        ("runtime.target", "--max-batch 0", "must be >= 1, got 0"),
    ],
)
def test_bad_settings_are_one_usage_line_before_anything_loads(program, option, complaint) -> None:
    result = run(f"-m {program} {option}")
    assert result.returncode == 2
    assert complaint in result.stderr and "Traceback" not in result.stderr


@pytest.mark.slow
def test_bench_runtime_tiny_prints_json_summary() -> None:
    result = run(
        f"{ROOT / 'scripts' / 'bench_runtime.py'} --tiny --json --prompts 1 --tokens 16 "
        "--repeats 2",
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    for key in (
        "overhead_ms_p50",
        "tokens_per_s_dsd",
        "tokens_per_s_hf_assisted",
        "ratio_vs_hf_assisted",
        "batched_wall_throughput_ratio",
        "batched_compute_throughput_ratio",
        "acceptance_rate",
        "model_pair",
        "threads",
        "core_budget",
    ):
        assert key in summary
    assert summary["lossless_greedy"] is True
    low, high = summary["ratio_vs_hf_assisted_range"]
    assert low <= summary["ratio_vs_hf_assisted"] <= high
    assert summary["repeats"] == 2 and summary["saturation_drafters"] == "real"
    wall = summary["saturated_wall_tokens_per_s"]
    assert summary["batched_wall_throughput_ratio"] == pytest.approx(
        wall["batched"] / wall["batch_1"]
    )
