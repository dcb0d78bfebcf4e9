"""The clairvoyant window policy, which only the simulator can run: an upper bound for AWC.

Before each round the simulator draws how many drafted tokens in a row the target will
accept, independently of γ (``EdgeSim``), and tells this policy. Drafting exactly that many
wastes no draft step and no verify slot on a rejected token, yet emits every token the
round could: a longer window would be rejected past the run, a shorter one leaves accepted
tokens for a later round and its round trip. It foresees acceptance only, not the network
or the server.
"""

from __future__ import annotations

from runtime.policies import RoundObservation, WindowPolicy, make_window_policy

SIMULATED_POLICY_SPECS = "oracle (simulator only)"


class Oracle:
    """γ = the coming round's acceptance run, capped at ``high``."""

    def __init__(self, high: int = 16) -> None:
        self.high = high
        self.name = "oracle"
        self._run = 1

    def foresee(self, run: int) -> None:
        self._run = run

    def next_gamma(self, context_len: int) -> int:
        return min(self._run, self.high)

    def observe(self, observation: RoundObservation) -> None:
        """Nothing to learn: it is told the future."""


def simulated_window_policy(spec: str) -> WindowPolicy:
    """The runtime's policies by their specs, plus ``oracle``."""
    if spec == "oracle":
        return Oracle()
    return make_window_policy(spec)
