"""The protocol's messages as the simulator carries them: only what timing and state need.
A verdict is the runtime's own (``runtime.rounds.Verdict``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from emulator.sim.edge import EdgeSim


@dataclass(slots=True)
class Open:
    edge: EdgeSim
    prompt_tokens: int
    max_tokens: int
    mode: str = "dsd"
    gamma: int = 0  # a fused session's window, drafted in the cloud
    t_recv: float = 0.0  # when the server drained it (ms)
    t_send: float = 0.0  # when the server sent ``opened``
    prefill_ms: float = 0.0


@dataclass(slots=True)
class Verify:
    edge: EdgeSim
    gamma: int
    run: int  # drafted tokens in a row the target accepts; drawn by the edge, see EdgeSim
    draft_ms: float | None = None  # sent by an edge that asks for a window hint
    t_recv: float = 0.0  # when the server drained it (ms)


@dataclass(slots=True)
class Close:
    edge: EdgeSim


@dataclass(slots=True)
class Tokens:
    """A streaming session's tokens from one batch (cloud: one decoded, fused: a round)."""

    emitted: int
    done: bool
    drafted: int
    accepted: int
    batch_size: int
    compute_ms: float
    t_send: float
    bytes: int
