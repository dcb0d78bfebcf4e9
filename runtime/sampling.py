"""How tokens are chosen and when a request is done: torch-free, for every process.

An emulated edge (``runtime.replay_draft``) holds no model and never imports torch; it
still applies the same budget and EOS rule as the server.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class SamplingParams:
    """How tokens are chosen. ``temperature == 0`` means greedy."""

    temperature: float = 0.0
    top_k: int = 0
    top_p: float = 1.0
    draft_top_k: int = 16
    seed: int = 0
    ignore_eos: bool = False  # generate the full token budget (benchmarks, emulator runs)

    @property
    def greedy(self) -> bool:
        return self.temperature <= 0.0

    def to_dict(self) -> dict[str, float | int | bool]:
        return asdict(self)


def truncate_emitted(
    tokens: Iterable[int], remaining: int, eos_ids: set[int]
) -> tuple[list[int], bool]:
    """Cut a round's emitted tokens at the token budget and after the first EOS.

    Both ends apply this same rule, so they agree on when a request is done.
    """
    out: list[int] = []
    for token in tokens:
        if len(out) >= remaining:
            break
        out.append(token)
        if token in eos_ids:
            return out, True
    return out, len(out) >= remaining
