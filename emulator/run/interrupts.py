"""Teardown that a second Ctrl-C cannot cut short: a user who presses it twice must not be
left with half a network (the first one already raised KeyboardInterrupt; see
``runtime.process.stop_on_signals``)."""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager

SHIELDED = (signal.SIGINT, signal.SIGTERM)


@contextmanager
def shielded(say: Callable[[str], None] = print) -> Iterator[list[int]]:
    """SIGINT and SIGTERM are noted, not raised, inside; the list holds those that came.
    The handlers in force before are restored after."""
    received: list[int] = []

    def note(signum: int, frame: object) -> None:
        if not received:
            say("still tearing down; one moment")
        received.append(signum)

    previous = {signum: signal.getsignal(signum) for signum in SHIELDED}
    for signum in SHIELDED:
        signal.signal(signum, note)
    try:
        yield received
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
