"""Reading and writing profile files, without torch: the simulator loads profiles in
processes that never load a model."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from runtime.cache import cache_root
from runtime.machine import fingerprint_id

# 3: greedy matches after a fully accepted round too; 4: the target probed at several widths;
# 5: rows of 2 and 4 tokens in the grid and the probe, cross-core interference; 6: time-sharing;
# 7: batches of 3 and 8 rows in the quick grid; 8: the draft's tokens along the target's
# output per prompt, for edges that replay them (``runtime.replay_draft``); 9: a
# verification's time-sharing beside another replica; 10: what rows of unequal cache lengths
# add to a batched verification
PROFILE_VERSION = 10
# every version from the committed reference profiles' (2) on
READABLE_VERSIONS = tuple(range(2, PROFILE_VERSION + 1))


def profile_name(target: str, draft: str) -> str:
    """The file stem a pair's profile is stored under, e.g. ``smollm2-int8``."""
    return re.sub(r"[^A-Za-z0-9.]+", "-", f"{target}__{draft}").strip("-")


def cached_profile_path(target: str, draft: str, machine: dict[str, Any]) -> Path:
    """Where this machine's profile of a pair is kept: one folder per fingerprint."""
    name = f"{profile_name(target, draft)}.json"
    return cache_root() / "profiles" / fingerprint_id(machine) / name


def save_profile(profile: dict[str, Any], path: str | Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f"{path.name}.partial")
    partial.write_text(json.dumps(profile, indent=1) + "\n")
    partial.replace(path)  # a profile cut short by Ctrl-C is never taken for a whole one


def load_profile(path: str | Path) -> dict[str, Any]:
    data = json.loads(Path(path).read_text())
    if data.get("version") not in READABLE_VERSIONS:
        raise ValueError(
            f"{path}: profile version {data.get('version')} (expected one of {READABLE_VERSIONS})"
        )
    return data
