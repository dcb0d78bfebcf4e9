"""Running the project's programs as a user does: this Python, from the repository root."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run_command(arguments: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """This Python with a shell-style argument string (``-m runtime.draft ...``, a script)."""
    return subprocess.run(
        [sys.executable, *shlex.split(arguments)],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
    )


def run_script(script: str, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """``scripts/<script>`` with the given arguments."""
    return run_command(shlex.join([str(ROOT / "scripts" / script), *args]), timeout)


def require_mininet() -> None:
    """Skip the calling test where the emulator cannot run: not root, or no mnexec."""
    if os.geteuid() != 0:
        pytest.skip("Mininet needs root")
    if not Path("/usr/bin/mnexec").exists() and not any(
        (Path(p) / "mnexec").exists() for p in os.environ.get("PATH", "").split(":")
    ):
        pytest.skip("mnexec is not installed (apt install mininet)")
