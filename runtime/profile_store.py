"""Reading and writing profile files, without torch: the simulator loads profiles in
processes that never load a model."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

PROFILE_VERSION = 2


def profile_name(target: str, draft: str) -> str:
    """The file stem a pair's profile is stored under, e.g. ``smollm2-int8``."""
    return re.sub(r"[^A-Za-z0-9.]+", "-", f"{target}__{draft}").strip("-")


def save_profile(profile: dict[str, Any], path: str | Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(profile, indent=1) + "\n")


def load_profile(path: str | Path) -> dict[str, Any]:
    data = json.loads(Path(path).read_text())
    if data.get("version") != PROFILE_VERSION:
        raise ValueError(
            f"{path}: profile version {data.get('version')} (expected {PROFILE_VERSION})"
        )
    return data
