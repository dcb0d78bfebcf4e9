"""Ctrl-C and SIGTERM as KeyboardInterrupt, for the long-running programs (the main job, the
window-policy evaluation), so that they stop cleanly and keep what they did."""

from __future__ import annotations

import signal


def stop_on_signals() -> None:
    """Both signals raise KeyboardInterrupt, also when the shell that started us ignores
    SIGINT, as shells do for background jobs (and the ignoring would be inherited)."""

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, interrupt)
    signal.signal(signal.SIGTERM, interrupt)
