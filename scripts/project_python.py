"""Re-running a script with the project's .venv when started by a Python without its
packages, as ``sudo python scripts/...`` does (sudo's own Python). Standard library only:
it must import where nothing else of the project can."""

from __future__ import annotations

import importlib.util
import os
import signal
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NEEDED = ("torch", "transformers", "zmq", "mininet", "yaml", "orjson", "rich", "emulator")


def use_project_python(script: str) -> None:
    """Re-execute ``script`` with the project's venv when this interpreter lacks its
    packages; exit 2 with the install command where there is no venv. Until the script's
    main takes over the signals, Ctrl-C ends it quietly (130), not with a traceback from the
    middle of importing torch."""
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, _exit_quietly)
    name = Path(script).stem
    missing = [module for module in NEEDED if importlib.util.find_spec(module) is None]
    if not missing:
        return
    venv = ROOT / ".venv" / "bin" / "python"
    if venv.is_file() and not os.environ.get("DSD_EMU_REEXEC"):
        print(
            f"{name}: {sys.executable} lacks {', '.join(missing)}; "
            f"re-running with {venv.relative_to(ROOT)}",
            file=sys.stderr,
            flush=True,
        )
        os.environ["DSD_EMU_REEXEC"] = "1"
        os.execv(str(venv), [str(venv), str(Path(script).resolve()), *sys.argv[1:]])
    print(
        f"{name}: error: this Python lacks {', '.join(missing)} and there is no project "
        "venv; install everything with: bash scripts/bootstrap.sh install",
        file=sys.stderr,
    )
    raise SystemExit(2)


def _exit_quietly(signum: int, frame: object) -> None:
    raise SystemExit(130)
