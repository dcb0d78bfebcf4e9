"""What a drafter observes after each round, built the same way in both worlds."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(slots=True)
class RoundObservation:
    """What a drafter can observe after one round; window policies learn from these.

    Not frozen: the simulator makes one per simulated round, and a frozen dataclass costs
    several times more to build."""

    gamma: int
    drafted: int
    accepted: int
    round_trip_ms: float
    server_verify_ms: float
    server_queue_ms: float
    batch_size: int
    draft_step_ms: float
    context_len: int
    batch_width: int = 0  # tokens in the batch's longest row (every row is padded to it)
    peer_width: int = 0  # tokens in the longest of the batch's other rows (0: alone)
    batch_accepted: int = -1  # accepted tokens over all the batch's rows (-1: not reported)
    batch_rejected: int = 0  # rows of the batch that ended in a rejection
    utilisation: float = 0.0  # the server's busy share of its recent past
    gamma_hint: int = 0  # the window the server advises (runtime.window_advice; 0: none)

    @property
    def network_ms(self) -> float:
        """Round trip minus the server's reported time: what the network (and stacks) cost."""
        return max(0.0, self.round_trip_ms - self.server_verify_ms - self.server_queue_ms)


def observation_from_round(record: Mapping[str, Any]) -> RoundObservation:
    """What a policy observes, built from a ``round`` event record
    (``runtime.rounds.RoundRecord``); what an older target does not report is read with
    the defaults below, in this one place.

    The draft client and the simulator both feed their policies through this one function
    from the records they log, so a policy sees the same thing in both worlds.
    """
    gamma = record["gamma"]
    return RoundObservation(
        gamma=gamma,
        drafted=record["drafted"],
        accepted=record["accepted"],
        round_trip_ms=(record["t_recv"] - record["t_send"]) * 1000.0,
        server_verify_ms=record["verify_ms"],
        server_queue_ms=record["queue_ms"],
        batch_size=record["batch_size"],
        draft_step_ms=record["draft_ms"] / gamma if gamma else 0.0,
        context_len=record["context_len"],
        batch_width=record.get("batch_width", gamma + 1),
        peer_width=record.get("peer_width", 0),
        batch_accepted=record.get("batch_accepted", -1),
        batch_rejected=record.get("batch_rejected", 0),
        utilisation=record.get("utilisation", 0.0),
        gamma_hint=record.get("gamma_hint", 0),
    )


def peer_widths(widths: list[int]) -> list[int]:
    """For each row of a batch, the width of the longest other row (0 for a lone row): the
    width a row's batch has whatever the row itself drafts."""
    ordered = sorted(widths, reverse=True)
    first, second = ordered[0], ordered[1] if len(ordered) > 1 else 0
    return [second if width == first else first for width in widths]
