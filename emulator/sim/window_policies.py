"""The simulator's window policies: the runtime's, by their specs, plus the clairvoyant
``oracle`` (``runtime.policies.Oracle``), which only the simulator can tell the future."""

from __future__ import annotations

from runtime.policies import Oracle, WindowPolicy, make_window_policy

ORACLE = "oracle"


def simulated_window_policy(spec: str) -> WindowPolicy:
    """The runtime's policies by their specs, plus ``oracle``."""
    if spec == ORACLE:
        return Oracle()
    return make_window_policy(spec)
