"""A draft's compute times as its profile measured them: what the simulator prices a draft
with, and what an emulated edge (``runtime.replay_draft``) spends instead of computing.

Read from the profile's ``draft_step_ms`` and ``draft_prefill_ms`` (``runtime.profile``):
CPU time of one core at the profiled thread count, interpolated between contexts.
"""

from __future__ import annotations

from typing import Any

from runtime.interpolation import interpolate, profile_points


class DraftTiming:
    """Lookups into one profile's draft times; memoised (the same are asked often)."""

    def __init__(self, profile: dict[str, Any]) -> None:
        steps = profile["draft_step_ms"]
        self._step = profile_points(steps, "context", "ms")
        # profiles from before the first token was timed price it like the others
        self._first = profile_points(steps, "context", "first_ms")
        self._first_after_accept = profile_points(steps, "context", "first_after_accept_ms")
        self._prefill = profile_points(profile["draft_prefill_ms"], "prompt_tokens", "ms")
        self._memo: dict[tuple, float] = {}

    def step_ms(self, context: int) -> float:
        """One further draft token of a round at ``context``."""
        key = ("step", context)
        if key not in self._memo:
            self._memo[key] = interpolate(*self._step, context)
        return self._memo[key]

    def round_ms(self, gamma: int, context: int, after_accept: bool = False) -> float:
        """Drafting ``gamma`` tokens in one round: the round's first token (the cache cropped
        and what the last verdict committed fed too: two tokens ``after_accept``-ing a whole
        round, else one) and the further ones."""
        if gamma <= 0:
            return 0.0
        key = ("round", gamma, context, after_accept)
        if key not in self._memo:
            firsts = self._first_after_accept if after_accept else self._first
            first = interpolate(*firsts, context)
            self._memo[key] = first + (gamma - 1) * self.step_ms(context)
        return self._memo[key]

    def prefill_ms(self, prompt_tokens: int) -> float:
        return interpolate(*self._prefill, prompt_tokens)
