"""One shaping interface, two backends: ``netem`` (tc) and ``delayline`` (userspace).

A link has two directions; each is shaped, in this order, by loss, a rate limit with a
bounded tail-drop queue, then delay plus jitter (order preserved). NaN or None in a field
means *unconstrained* (no rate limit, no delay, ...).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Protocol

import numpy as np

from emulator.link.pipe import PipeLayout

DEFAULT_QUEUE_PACKETS = 100


@dataclass(frozen=True)
class ShapeParams:
    """What one direction of a link does right now."""

    rate_mbps: float | None = None
    delay_ms: float = 0.0
    jitter_ms: float = 0.0
    loss_pct: float = 0.0
    queue_packets: int = DEFAULT_QUEUE_PACKETS

    @staticmethod
    def from_trace_values(
        rate_mbps: float,
        delay_ms: float,
        jitter_ms: float,
        loss_pct: float,
        queue_packets: int = DEFAULT_QUEUE_PACKETS,
    ) -> ShapeParams:
        """Trace values (NaN = unspecified) as shaper settings."""

        def known(value: float) -> bool:
            return value is not None and not math.isnan(value)

        return ShapeParams(
            rate_mbps=rate_mbps if known(rate_mbps) else None,
            delay_ms=delay_ms if known(delay_ms) else 0.0,
            jitter_ms=jitter_ms if known(jitter_ms) else 0.0,
            loss_pct=min(100.0, loss_pct) if known(loss_pct) else 0.0,
            queue_packets=queue_packets,
        )

    def to_dict(self) -> dict[str, float | int | None]:
        return asdict(self)


@dataclass(frozen=True)
class PacketLogRequest:
    """A Mahimahi-format packet log of one direction: where, and its header's names."""

    path: str
    link_name: str  # "Uplink" or "Downlink", as mm-link names them
    trace_name: str
    command_line: str

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


class LinkShaper(Protocol):
    """Shapes both directions of one link; ``set`` may be called live, many times a second."""

    backend: str

    def set(self, direction: str, params: ShapeParams) -> None: ...

    def configure(self, direction: str, layout: PipeLayout, log: PacketLogRequest | None) -> None:
        """Build one direction as ``layout`` (stages, queue, once) before the replay starts."""
        ...

    def set_deliveries(self, direction: str, deliveries_ms: np.ndarray | None) -> None:
        """Packet-exact replay of Mahimahi delivery opportunities (None: back to rates)."""
        ...

    def close(self) -> None: ...
