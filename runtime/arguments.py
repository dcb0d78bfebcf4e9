"""argparse types shared by the command-line programs, so that a bad value is one usage line
(exit 2) before anything loads."""

from __future__ import annotations

import argparse

from runtime.policies import make_window_policy


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def window_policy_spec(text: str) -> str:
    """A window policy spec (``fixed:4``, ``awc`` ...), checked by building the policy."""
    try:
        make_window_policy(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc
    return text
