"""Running the project's programs as a user does: this Python, from the repository root."""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_command(arguments: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """This Python with a shell-style argument string (``-m runtime.draft ...``, a script);
    one that runs past ``timeout`` fails the test showing the end of what it printed."""
    try:
        return subprocess.run(
            [sys.executable, *shlex.split(arguments)],
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=ROOT,
        )
    except subprocess.TimeoutExpired as exc:
        printed = exc.stdout or b""
        text = printed.decode(errors="replace") if isinstance(printed, bytes) else printed
        message = f"{arguments} ran past {timeout:g} s; it printed:\n{text[-3000:]}"
        raise AssertionError(message) from None


def run_script(script: str, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """``scripts/<script>`` with the given arguments."""
    return run_command(shlex.join([str(ROOT / "scripts" / script), *args]), timeout)
