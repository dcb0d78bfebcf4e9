"""What a drafter hands the edge client each round, and the interface every drafter keeps.

Torch-free: the real drafter (``runtime.drafting.DraftState``) and the emulated one
(``runtime.replay_draft.ReplayDraft``) both answer to ``Drafter``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    import torch


@dataclass
class Proposal:
    """γ drafted tokens and, when sampling, the exact sparse q each was drawn from."""

    tokens: list[int]
    q_ids: torch.Tensor | None
    q_probs: torch.Tensor | None
    draft_ms: float
    draft_cpu_ms: float = 0.0  # this thread's CPU time: draft_ms less any wait for the CPU
    # how an emulated edge came by the tokens ("table" or "fallback"); None for a real draft
    source: str | None = None
    fallback_ms: float = 0.0  # an emulated edge's wait for the shared real draft


@dataclass(frozen=True)
class Timing:
    wall_ms: float
    cpu_ms: float  # this thread's CPU time: wall_ms less any wait for the CPU


class Drafter(Protocol):
    """The draft side of one request, kept in step with its committed tokens."""

    def prefill(self, prompt: list[int]) -> Timing:
        """Cache the prompt ahead of the first proposal."""
        ...

    def propose(self, committed: list[int], gamma: int) -> Proposal: ...

    def accept(self, accepted: int) -> None:
        """After a verdict: the first ``accepted`` drafted tokens are now committed."""
        ...

    def close(self) -> None:
        """The request is over."""
        ...
