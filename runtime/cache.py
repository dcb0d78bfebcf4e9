"""Where DSD-Emu keeps what it makes once per machine (converted models, this machine's
profiles): ``DSD_EMU_CACHE``, else ``~/.cache/dsd-emu``. No torch: the simulator reads it."""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    return Path(os.environ.get("DSD_EMU_CACHE") or Path.home() / ".cache" / "dsd-emu")
