"""Round records for hand-made logs: a complete one with plain defaults, the fields a test
is about given, so that every fixture holds to the schema the readers require."""

from __future__ import annotations

from typing import Any

from runtime.rounds import RoundRecord

DEFAULTS: dict[str, Any] = {
    "session": "s",
    "edge": "e",
    "round": 0,
    "gamma": 4,
    "drafted": 4,
    "accepted": 2,
    "emitted": 3,
    "context_len": 40,
    "draft_ms": 4.0,
    "t_send": 1.0,
    "t_recv": 1.01,
    "server_t_recv": None,
    "server_t_send": 1.008,
    "queue_ms": 0.0,
    "batch_size": 1,
    "verify_ms": 5.0,
    "bytes_up": 100,
    "bytes_down": 50,
}


def round_record(**fields: Any) -> RoundRecord:
    """A round: the defaults, with ``fields`` over them (``log.write("round", **r.event())``)."""
    return RoundRecord(**{**DEFAULTS, **fields})


def round_event(**fields: Any) -> dict[str, Any]:
    """A ``round`` event as a log holds it, for readers given events rather than a log."""
    return {"event": "round", **round_record(**fields).event()}
