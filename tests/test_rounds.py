"""The one round schema: a verdict through the wire and a round into the log, in both worlds."""

from __future__ import annotations

import dataclasses

import pytest

from runtime import protocol
from runtime.events import EventLog, read_events
from runtime.observations import observation_from_round
from runtime.rounds import DraftedRound, RoundRecord, Verdict, rounds_of

VERDICT = Verdict("s1", 3, 2, 17, False, 1.5, 4, 30.0, 10.0, 10.05, batch_width=5, peer_width=3)


def test_a_verdict_survives_the_wire_and_keeps_absent_fields_absent() -> None:
    message = protocol.decode(protocol.encode(VERDICT.wire()), ("verdict",))
    assert Verdict.from_wire(message) == VERDICT
    assert "gamma_hint" not in message and "utilisation" not in message
    assert message["batch_width"] == 5


def test_the_protocol_validates_a_verdict_by_its_dataclass() -> None:
    """Every field of ``Verdict`` is what the protocol checks: required ones missing or of
    the wrong type are refused, and an unknown one too."""
    wire = VERDICT.wire()
    for field in dataclasses.fields(Verdict):
        if field.default is dataclasses.MISSING:
            broken = {k: v for k, v in wire.items() if k != field.name}
            with pytest.raises(protocol.ProtocolError, match=f"missing field '{field.name}'"):
                protocol.decode(protocol.encode(broken))
    with pytest.raises(protocol.ProtocolError, match="field 'accepted' has type str"):
        protocol.decode(protocol.encode({**wire, "accepted": "2"}))
    with pytest.raises(protocol.ProtocolError, match="unknown field 'colour'"):
        protocol.decode(protocol.encode({**wire, "colour": 1}))
    assert set(protocol.SCHEMAS["verdict"]) == {f.name for f in dataclasses.fields(Verdict)}


def test_a_round_record_joins_the_edge_side_and_the_verdict() -> None:
    drafted = DraftedRound(4, 12.0, 9.99, 120, draft_cpu_ms=11.0)
    record = RoundRecord.of_verdict(
        drafted, VERDICT, edge="e", index=7, emitted=3, context_len=40, t_recv=10.1, bytes_down=90
    )
    event = record.event()
    assert event["round"] == 7  # the request's count, not the session's
    assert (event["gamma"], event["accepted"], event["emitted"]) == (4, 2, 3)
    assert (event["server_t_recv"], event["server_t_send"]) == (10.0, 10.05)
    assert event["batch_width"] == 5 and "utilisation" not in event and "gamma_hint" not in event
    assert "proposal_source" not in event and event["draft_cpu_ms"] == 11.0
    seen = observation_from_round(event)
    assert seen.round_trip_ms == pytest.approx(110.0) and seen.peer_width == 3


def test_a_streaming_round_keeps_its_missing_times_as_none() -> None:
    tokens = {"drafted": 3, "accepted": 1, "batch_size": 2, "compute_ms": 8.0, "t_send": 5.0}
    event = RoundRecord.of_stream(
        "s", "e", 0, tokens, emitted=2, context_len=9, t_recv=5.1, bytes_down=40
    ).event()
    assert event["t_send"] is None and event["server_t_recv"] is None
    assert (event["drafted"], event["verify_ms"], event["batch_size"]) == (3, 8.0, 2)


def test_a_logged_round_reads_back_as_the_record_that_wrote_it(tmp_path) -> None:
    """Through a real log (its envelope and JSON): the metrics and reports read rounds back
    as records, other events passed over; a round without a required field is refused."""
    drafted = DraftedRound(4, 12.0, 9.99, 120, proposal_source="table")
    record = RoundRecord.of_verdict(
        drafted, VERDICT, edge="e", index=1, emitted=3, context_len=40, t_recv=10.1, bytes_down=90
    )
    log = EventLog(tmp_path / "e.jsonl", "e")
    log.write("request", edge="e", output_tokens=3)
    log.write("round", **record.event())
    log.close()
    assert list(rounds_of(read_events(tmp_path / "e.jsonl"))) == [record]
    broken = {k: v for k, v in record.event().items() if k != "bytes_up"}
    with pytest.raises(ValueError, match="a round event without 'bytes_up'"):
        RoundRecord.of_event(broken)
