"""Wire protocol between edge (ZeroMQ DEALER) and cloud (ROUTER): msgpack maps, never pickle.

Every message is a map with ``v`` (protocol version) and ``type``. Token ids travel as packed
little-endian int32 arrays, probabilities as float32 arrays. ``decode`` validates every field
of every incoming message and raises ``ProtocolError`` on anything unexpected, so the server
can answer ``error`` and keep serving.

Edge -> cloud: ``open``, ``verify``, ``close``.
Cloud -> edge: ``opened``, ``verdict``, ``tokens`` (cloud-only / fused streaming), ``closed``,
``error``.
"""

from __future__ import annotations

import dataclasses
from typing import Any, get_args, get_type_hints

import msgpack
import numpy as np

from runtime.rounds import Verdict

VERSION = 1
MAX_MESSAGE_BYTES = 4 * 1024 * 1024
MAX_PROMPT_TOKENS = 32_768
MAX_GAMMA = 64
MAX_DRAFT_TOP_K = 256
MAX_SESSION_ID = 128
MODES = ("dsd", "cloud", "fused")
EDGE_MODES = (*MODES, "edge-only")  # an edge-only request never reaches the server

_INT32 = np.dtype("<i4")
_FLOAT32 = np.dtype("<f4")


class ProtocolError(ValueError):
    """An incoming message is malformed; ``code`` is sent back in the ``error`` reply."""

    def __init__(self, message: str, code: str = "bad_message") -> None:
        super().__init__(message)
        self.code = code


def pack_ids(ids: list[int] | np.ndarray) -> bytes:
    return np.asarray(ids, dtype=_INT32).tobytes()


def pack_probs(values: Any) -> bytes:
    return np.asarray(values, dtype=_FLOAT32).tobytes()


def unpack_ids(blob: bytes) -> list[int]:
    return np.frombuffer(blob, dtype=_INT32).tolist()


def unpack_probs(blob: bytes) -> np.ndarray:
    return np.frombuffer(blob, dtype=_FLOAT32)


def tokens_message(
    session: str,
    tokens: list[int],
    done: bool,
    drafted: int,
    accepted: int,
    batch_size: int,
    compute_ms: float,
    t_send: float,
) -> dict[str, Any]:
    """The ``tokens`` reply of a streaming (cloud or fused) session: built here so that the
    simulator prices the same bytes the server sends."""
    return {
        "type": "tokens",
        "session": session,
        "tokens": pack_ids(tokens),
        "done": done,
        "drafted": drafted,
        "accepted": accepted,
        "batch_size": batch_size,
        "compute_ms": compute_ms,
        "t_send": t_send,
    }


def _field_bytes(name: str, value: Any) -> int:
    """What one more field adds to an encoded map."""
    return len(msgpack.packb({name: value})) - len(msgpack.packb({}))


# What asking for window advice adds to a verify request and its verdict (the simulator
# prices the same bytes)
ADVICE_REQUEST_BYTES = _field_bytes("draft_ms", 0.5)
ADVICE_REPLY_BYTES = _field_bytes("gamma_hint", 4)


def encode(message: dict[str, Any]) -> bytes:
    """Serialise a message map (adds the version field)."""
    return msgpack.packb({"v": VERSION, **message}, use_bin_type=True)


# Field specs: name -> (accepted python types, required).
_NUM = (int, float)
_WIRE_TYPES: dict[Any, tuple[type, ...]] = {int: (int,), float: _NUM, str: (str,), bool: (bool,)}


def _schema_of(record: type) -> dict[str, tuple[tuple[type, ...], bool]]:
    """A message's field specs from its dataclass (``runtime.rounds``): a field typed
    ``X | None`` is optional, a float accepts an int too."""
    hints = get_type_hints(record)
    schema = {}
    for field in dataclasses.fields(record):
        kinds = [kind for kind in get_args(hints[field.name]) if kind is not type(None)]
        kind = kinds[0] if kinds else hints[field.name]
        schema[field.name] = (_WIRE_TYPES[kind], field.default is dataclasses.MISSING)
    return schema


_SAMPLING_FIELDS: dict[str, tuple[tuple[type, ...], bool]] = {
    "temperature": (_NUM, True),
    "top_k": ((int,), True),
    "top_p": (_NUM, True),
    "draft_top_k": ((int,), True),
    "seed": ((int,), True),
    "ignore_eos": ((bool,), False),
}
SCHEMAS: dict[str, dict[str, tuple[tuple[type, ...], bool]]] = {
    "open": {
        "session": ((str,), True),
        "prompt": ((bytes,), True),
        "max_tokens": ((int,), True),
        "mode": ((str,), True),
        "sampling": ((dict,), True),
        "gamma": ((int,), False),
    },
    "verify": {
        "session": ((str,), True),
        "round": ((int,), True),
        "draft": ((bytes,), True),
        "q_ids": ((bytes,), False),
        "q_probs": ((bytes,), False),
        "t_send": (_NUM, False),
        # the edge's drafting time this round; sending it asks for a ``gamma_hint``
        "draft_ms": (_NUM, False),
    },
    "close": {"session": ((str,), True)},
    "opened": {
        "session": ((str,), True),
        "token": ((int,), True),
        "done": ((bool,), True),
        "prefill_ms": (_NUM, True),
        "t_recv": (_NUM, True),
        "t_send": (_NUM, True),
    },
    "verdict": _schema_of(Verdict),
    "tokens": {
        "session": ((str,), True),
        "tokens": ((bytes,), True),
        "done": ((bool,), True),
        "drafted": ((int,), False),
        "accepted": ((int,), False),
        "batch_size": ((int,), False),
        "compute_ms": (_NUM, False),
        "t_send": (_NUM, True),
    },
    "closed": {"session": ((str,), True)},
    "error": {
        "code": ((str,), True),
        "message": ((str,), True),
        "session": ((str, type(None)), False),
    },
}


def _check_fields(
    kind: str, body: dict[Any, Any], spec: dict[str, tuple[tuple[type, ...], bool]]
) -> None:
    for key in body:
        if key not in spec:
            raise ProtocolError(f"{kind}: unknown field {key!r}")
    for key, (types, required) in spec.items():
        if key not in body:
            if required:
                raise ProtocolError(f"{kind}: missing field {key!r}")
            continue
        value = body[key]
        if isinstance(value, bool) and bool not in types:
            raise ProtocolError(f"{kind}: field {key!r} has type bool")
        if not isinstance(value, types):
            raise ProtocolError(f"{kind}: field {key!r} has type {type(value).__name__}")


def _check_array(kind: str, body: dict[str, Any], key: str, limit: int) -> None:
    blob = body.get(key)
    if blob is None:
        return
    if len(blob) % 4:
        raise ProtocolError(f"{kind}: field {key!r} is not a whole number of 4-byte values")
    if len(blob) // 4 > limit:
        raise ProtocolError(f"{kind}: field {key!r} holds more than {limit} values", "too_large")


def _check_semantics(kind: str, body: dict[str, Any]) -> None:
    session = body.get("session")
    if isinstance(session, str) and not 0 < len(session) <= MAX_SESSION_ID:
        raise ProtocolError(f"{kind}: session id must be 1..{MAX_SESSION_ID} characters")
    if kind == "open":
        _check_fields("open.sampling", body["sampling"], _SAMPLING_FIELDS)
        sampling = body["sampling"]
        if not (0.0 <= sampling["temperature"] <= 100.0 and 0.0 < sampling["top_p"] <= 1.0):
            raise ProtocolError("open: temperature must be in [0, 100] and top_p in (0, 1]")
        if sampling["top_k"] < 0 or not 1 <= sampling["draft_top_k"] <= MAX_DRAFT_TOP_K:
            raise ProtocolError(f"open: top_k must be >= 0 and draft_top_k in 1..{MAX_DRAFT_TOP_K}")
        if body["mode"] not in MODES:
            raise ProtocolError(f"open: mode must be one of {', '.join(MODES)}")
        if body["max_tokens"] < 1:
            raise ProtocolError("open: max_tokens must be >= 1")
        if not 0 <= body.get("gamma", 0) <= MAX_GAMMA:
            raise ProtocolError(f"open: gamma must be in 0..{MAX_GAMMA}")
        _check_array(kind, body, "prompt", MAX_PROMPT_TOKENS)
        if not body["prompt"]:
            raise ProtocolError("open: prompt is empty")
    elif kind == "verify":
        _check_array(kind, body, "draft", MAX_GAMMA)
        _check_array(kind, body, "q_ids", MAX_GAMMA * MAX_DRAFT_TOP_K)
        _check_array(kind, body, "q_probs", MAX_GAMMA * MAX_DRAFT_TOP_K)
        if ("q_ids" in body) != ("q_probs" in body):
            raise ProtocolError("verify: q_ids and q_probs travel together")
        if "q_ids" in body and len(body["q_ids"]) != len(body["q_probs"]):
            raise ProtocolError("verify: q_ids and q_probs differ in length")
        if body["round"] < 0:
            raise ProtocolError("verify: round must be >= 0")


def decode(frame: bytes, expect: tuple[str, ...] | None = None) -> dict[str, Any]:
    """Parse and validate one message; raises ProtocolError on any defect."""
    if len(frame) > MAX_MESSAGE_BYTES:
        raise ProtocolError(
            f"message of {len(frame)} bytes exceeds {MAX_MESSAGE_BYTES}", "too_large"
        )
    try:
        body = msgpack.unpackb(frame, raw=False, strict_map_key=True, max_bin_len=MAX_MESSAGE_BYTES)
    except Exception as exc:  # msgpack raises many unrelated types for corrupt input
        raise ProtocolError(f"undecodable message: {type(exc).__name__}") from exc
    if not isinstance(body, dict):
        raise ProtocolError("message is not a map")
    if body.get("v") != VERSION:
        raise ProtocolError(f"unsupported protocol version {body.get('v')!r}", "bad_version")
    kind = body.get("type")
    if not isinstance(kind, str) or kind not in SCHEMAS:
        raise ProtocolError(f"unknown message type {kind!r}", "unknown_type")
    if expect is not None and kind not in expect:
        raise ProtocolError(f"unexpected message type {kind!r}", "unexpected_type")
    fields = {k: v for k, v in body.items() if k not in ("v", "type")}
    _check_fields(kind, fields, SCHEMAS[kind])
    _check_semantics(kind, fields)
    fields["type"] = kind
    return fields
