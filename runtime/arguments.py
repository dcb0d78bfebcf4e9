"""argparse types shared by the command-line programs, so that a bad value is one usage line
(exit 2) before anything loads."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from runtime.policies import WindowPolicy, make_window_policy


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def positive_float(text: str) -> float:
    value = float(text)
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a number > 0, got {text}")
    return value


def non_negative_float(text: str) -> float:
    value = float(text)
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a number >= 0, got {text}")
    return value


def policy_spec_type(factory: Callable[[str], WindowPolicy]) -> Callable[[str], str]:
    """An argparse type for window policy specs that ``factory`` builds."""

    def check(text: str) -> str:
        try:
            factory(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from exc
        return text

    return check


window_policy_spec = policy_spec_type(make_window_policy)  # ``fixed:4``, ``awc`` ...


SPEED_PROBE_HELP = (
    "after loading and again at the end, time one profile point and log it (a 'speed' "
    "event), so that a simulation of this run can scale the profile to this machine's speed "
    "during the run"
)
