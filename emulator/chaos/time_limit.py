"""A time limit on one fault: a fault that hangs is a fault not survived, reported with the
line it hung on, and the faults after it still run."""

from __future__ import annotations

import signal
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType

from emulator.paths import ROOT

SHOWN_FRAMES = 2
OURS = tuple(str(ROOT / folder) for folder in ("emulator", "runtime", "tests", "scripts"))


class TimeLimitExceeded(Exception):
    """Raised in the main thread when the limit passes; says where the code was waiting."""


def _place(frame: traceback.FrameSummary) -> str:
    path = Path(frame.filename)
    shown = (
        path.relative_to(ROOT)
        if frame.filename.startswith(OURS)
        else Path(path.parent.name, path.name)
    )
    return f"{shown}:{frame.lineno} {frame.name}"


def where(frame: FrameType | None) -> str:
    """The innermost frame (what it waited in), then the project's own innermost frames
    (what it waited for)."""
    stack = traceback.extract_stack(frame)
    ours = [f for f in stack if f.filename.startswith(OURS)][-SHOWN_FRAMES:]
    called_from = " <- ".join(_place(f) for f in reversed(ours))
    if ours and ours[-1] is stack[-1]:
        return called_from
    innermost = _place(stack[-1])
    return f"{innermost}, in {called_from}" if ours else innermost


@contextmanager
def time_limit(seconds: float, what: str) -> Iterator[None]:
    """Run the body under a SIGALRM limit (main thread only); blocking waits such as
    ``communicate`` and ``zmq`` polls are interrupted by it."""

    def expire(signum: int, frame: FrameType | None) -> None:
        raise TimeLimitExceeded(f"{what} did not finish within {seconds:g} s: at {where(frame)}")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
