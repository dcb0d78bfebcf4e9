"""The summariser's definitions, on a hand-made event log with known answers."""

from __future__ import annotations

import pytest
from records import round_record

from runtime.events import EventLog, read_events
from runtime.metrics import format_table, summarise


def test_summary_of_a_known_log(tmp_path) -> None:
    log = EventLog(tmp_path / "log.jsonl", "edge")
    log.write(
        "request",
        edge="a",
        session="s",
        mode="dsd",
        prompt_tokens=5,
        output_tokens=11,
        rounds=2,
        t_arrival=100.0,
        t_first_token=100.2,
        t_done=101.2,
    )
    log.write(
        "request",
        edge="b",
        session="t",
        mode="dsd",
        prompt_tokens=5,
        output_tokens=5,
        rounds=1,
        t_arrival=100.5,
        t_first_token=100.6,
        t_done=102.0,
    )
    for edge, gamma, accepted, t_send in (
        ("a", 4, 4, 100.3),
        ("a", 4, 0, 100.4),
        ("b", 2, 1, 100.7),
    ):
        record = round_record(
            edge=edge,
            gamma=gamma,
            drafted=gamma,
            accepted=accepted,
            emitted=accepted + 1,
            context_len=10,
            t_send=t_send,
            t_recv=t_send + 0.010,
            queue_ms=1.0,
            batch_size=2,
        )
        log.write("round", **record.event())
    log.close()
    (tmp_path / "log.jsonl").open("a").write('{"event": "round", "torn')  # a crash mid-line
    summary = summarise(read_events(tmp_path / "log.jsonl"))
    assert summary["requests"] == 2 and summary["output_tokens"] == 16
    assert summary["throughput_tok_s"] == pytest.approx(16 / 2.0)
    assert summary["ttft_ms"]["p50"] == pytest.approx(150.0)
    assert summary["per_edge"]["a"]["tpot_ms"]["mean"] == pytest.approx(100.0)
    assert summary["per_edge"]["b"]["tpot_ms"]["mean"] == pytest.approx(350.0)
    assert summary["acceptance_rate"] == pytest.approx(5 / 10)
    assert summary["tokens_per_round"] == pytest.approx(8 / 3)
    assert summary["round_trip_ms"]["p50"] == pytest.approx(10.0)
    assert summary["bytes_up"] == 300
    table = format_table(summary)
    assert "overall" in table and "\na " in table


def test_failed_requests_are_counted_not_summarised() -> None:
    events = [
        {
            "event": "request",
            "edge": "a",
            "output_tokens": 3,
            "t_arrival": 1.0,
            "t_first_token": None,
            "t_done": None,
            "error": "timeout",
        }
    ]
    summary = summarise(events)
    assert summary["requests"] == 0 and summary["failed_requests"] == 1
    assert summary["throughput_tok_s"] is None
