"""One round of DSD in one schema: the target's ``verdict`` (on the wire) and the edge's
``round`` event (in the log), each a dataclass with its conversions.

The protocol validates a verdict against ``Verdict``'s fields (``runtime.protocol``); the
server and the simulated server build one; the edge client and the simulated edge log a
round as a ``RoundRecord`` built from one; window policies observe the logged record
(``runtime.observations``), and ``runtime.metrics`` and the reports read it back
(``RoundRecord.of_event``, ``rounds_of``). A field added here reaches all of them. Times
(``t_*``) are seconds on the writer's clock, durations ms.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import MISSING, dataclass, fields
from operator import attrgetter
from typing import Any

Fields = tuple[tuple[str, ...], Callable[[Any], Any], tuple[str, ...], Callable[[Any], Any]]
_FIELDS: dict[type, Fields] = {}


def _fields_of(kind: type) -> Fields:
    """A record type's required and optional field names with getters of their values,
    made once per type (the simulator logs millions of rounds)."""
    if kind not in _FIELDS:
        required = tuple(f.name for f in fields(kind) if f.default is MISSING)
        optional = tuple(f.name for f in fields(kind) if f.default is not MISSING)
        _FIELDS[kind] = required, attrgetter(*required), optional, attrgetter(*optional)
    return _FIELDS[kind]


def _as_dict(record: Verdict | RoundRecord) -> dict[str, Any]:
    """A record's fields as a map: every required one, an optional one where it is set."""
    required, required_values, optional, optional_values = _fields_of(type(record))
    found = dict(zip(required, required_values(record), strict=True))
    for name, value in zip(optional, optional_values(record), strict=True):
        if value is not None:
            found[name] = value
    return found


@dataclass(slots=True)
class Verdict:
    """The target's answer to one ``verify``: how many drafted tokens it accepted and its own
    next token, with what the batch cost and looked like. The simulator, which carries no
    token ids, sends token 0."""

    session: str
    round: int
    accepted: int
    token: int
    done: bool
    queue_ms: float
    batch_size: int
    verify_ms: float
    t_recv: float  # when the server took the verify in (its clock)
    t_send: float  # when it sent this verdict
    # what the target reports of the batch and itself; absent from servers that do not
    batch_width: int | None = None  # tokens in the batch's longest row (every row is padded)
    peer_width: int | None = None  # tokens in its longest other row (0: alone)
    batch_accepted: int | None = None  # accepted tokens over the batch's rows
    batch_rejected: int | None = None  # rows of the batch that ended in a rejection
    utilisation: float | None = None  # the target's busy share of its recent past
    gamma_hint: int | None = None  # the window it advises, where the edge asked (0: none yet)

    def wire(self) -> dict[str, Any]:
        """The ``verdict`` message's map (``protocol.encode`` adds the version)."""
        return {"type": "verdict", **_as_dict(self)}

    @classmethod
    def from_wire(cls, message: dict[str, Any]) -> Verdict:
        """A verdict from a message ``protocol.decode`` validated."""
        return cls(**{name: value for name, value in message.items() if name != "type"})


@dataclass(slots=True)
class DraftedRound:
    """What the edge knows of a round before its verdict: the window, what drafting cost,
    and when and how much it sent."""

    gamma: int
    draft_ms: float
    t_send: float
    bytes_up: int
    draft_cpu_ms: float | None = None  # the drafting thread's CPU time (simulated: compute)
    proposal_source: str | None = None  # an emulated edge's: "table" or "fallback"
    fallback_ms: float | None = None  # what asking the shared real draft took


@dataclass(slots=True)
class RoundRecord:
    """One round as the edge logs it (the ``round`` event), in both worlds. A streaming
    (cloud or fused) session's round has no send time nor server receive time (None)."""

    session: str
    edge: str
    round: int
    gamma: int
    drafted: int
    accepted: int
    emitted: int
    context_len: int
    draft_ms: float
    t_send: float | None
    t_recv: float
    server_t_recv: float | None
    server_t_send: float
    queue_ms: float
    batch_size: int
    verify_ms: float
    bytes_up: int
    bytes_down: int
    draft_cpu_ms: float | None = None
    batch_width: int | None = None
    peer_width: int | None = None
    batch_accepted: int | None = None
    batch_rejected: int | None = None
    utilisation: float | None = None
    gamma_hint: int | None = None
    proposal_source: str | None = None
    fallback_ms: float | None = None

    @classmethod
    def of_verdict(
        cls,
        drafted: DraftedRound,
        verdict: Verdict,
        *,
        edge: str,
        index: int,
        emitted: int,
        context_len: int,
        t_recv: float,
        bytes_down: int,
    ) -> RoundRecord:
        """A DSD round from the edge's side of it and the target's verdict: ``index`` counts
        the request's rounds (a session re-opened after a lost target counts anew), and
        ``context_len`` is the committed length after the round's tokens."""
        return cls(  # positional, in the fields' order: the simulator makes millions
            verdict.session,
            edge,
            index,
            drafted.gamma,
            drafted.gamma,
            verdict.accepted,
            emitted,
            context_len,
            drafted.draft_ms,
            drafted.t_send,
            t_recv,
            verdict.t_recv,
            verdict.t_send,
            verdict.queue_ms,
            verdict.batch_size,
            verdict.verify_ms,
            drafted.bytes_up,
            bytes_down,
            drafted.draft_cpu_ms,
            verdict.batch_width,
            verdict.peer_width,
            verdict.batch_accepted,
            verdict.batch_rejected,
            verdict.utilisation,
            verdict.gamma_hint or None,
            drafted.proposal_source,
            drafted.fallback_ms,
        )

    @classmethod
    def of_stream(
        cls,
        session: str,
        edge: str,
        index: int,
        tokens: dict[str, Any],
        *,
        emitted: int,
        context_len: int,
        t_recv: float,
        bytes_down: int,
    ) -> RoundRecord:
        """A streaming session's round, from its ``tokens`` message's fields (``drafted``,
        ``accepted``, ``batch_size``, ``compute_ms``, ``t_send``)."""
        drafted = tokens.get("drafted", 0)
        return cls(
            session=session,
            edge=edge,
            round=index,
            gamma=drafted,
            drafted=drafted,
            accepted=tokens.get("accepted", 0),
            emitted=emitted,
            context_len=context_len,
            draft_ms=0.0,
            t_send=None,
            t_recv=t_recv,
            server_t_recv=None,
            server_t_send=tokens["t_send"],
            queue_ms=0.0,
            batch_size=tokens.get("batch_size", 1),
            verify_ms=tokens.get("compute_ms", 0.0),
            bytes_up=0,
            bytes_down=bytes_down,
        )

    def event(self) -> dict[str, Any]:
        """The ``round`` event's fields (``EventLog.write("round", **record.event())``)."""
        return _as_dict(self)

    @classmethod
    def of_event(cls, event: Mapping[str, Any]) -> RoundRecord:
        """A logged ``round`` event read back (its log's envelope left out); one without a
        field this schema requires is refused, naming the field."""
        required, _, optional, _ = _fields_of(cls)
        try:
            values = [event[name] for name in required]
        except KeyError as exc:
            raise ValueError(f"a round event without {exc.args[0]!r}: {dict(event)}") from None
        return cls(*values, *[event.get(name) for name in optional])


def rounds_of(events: Iterable[Mapping[str, Any]]) -> Iterator[RoundRecord]:
    """The ``round`` events of a log (any other event passed over), as records."""
    return (RoundRecord.of_event(e) for e in events if e.get("event") == "round")
