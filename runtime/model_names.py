"""Names of models and drafts on the command line and in scenarios, without loading any.

``replay`` or ``replay:SPEC`` names an emulated edge's draft (``runtime.replay_draft``): the
draft SPEC's tokens and times replayed from its profile; no model is loaded.
"""

from __future__ import annotations

DEFAULT_TARGET = "smollm2"
DEFAULT_DRAFT = "int8"
REPLAY = "replay"


def replayed_draft(spec: str) -> str | None:
    """The draft a ``replay[:SPEC]`` spec replays (the default draft for a bare ``replay``),
    or None for a real draft's spec."""
    name, sep, rest = spec.partition(":")
    if name != REPLAY:
        return None
    return rest if sep and rest else DEFAULT_DRAFT
