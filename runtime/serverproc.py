"""Start a target server as a child process and wait until it serves (benchmarks, demos, tests)."""

from __future__ import annotations

import os
import select
import subprocess
import sys
from pathlib import Path

from runtime.process import stop_child

READY_PREFIX = "target: serving "


class ServerProcess:
    """A ``python -m runtime.target`` child; a context manager that always stops it."""

    def __init__(self, args: list[str], log: Path | None = None, startup_timeout_s: float = 180.0):
        self.log = log
        command = [sys.executable, "-m", "runtime.target", "--bind", "tcp://127.0.0.1:*", *args]
        if log is not None:
            command += ["--log", str(log)]
        self.process = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        self.endpoint = self._wait_ready(startup_timeout_s)

    def _wait_ready(self, timeout_s: float) -> str:
        assert self.process.stdout is not None
        seen: list[str] = []
        while True:
            ready, _, _ = select.select([self.process.stdout], [], [], timeout_s)
            line = self.process.stdout.readline() if ready else ""
            if line.startswith(READY_PREFIX):
                return line[len(READY_PREFIX) :].split(" on ", 1)[1].split()[0]
            if line:
                seen.append(line.rstrip())
                continue
            self.stop()
            raise RuntimeError("target server did not start:\n" + "\n".join(seen[-20:]))

    def stop(self) -> None:
        stop_child(self.process, grace_s=15)

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
