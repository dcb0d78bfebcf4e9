"""Profiles of model pairs where a side runs on a device this machine cannot run
(``emulator.sim.device_spec``): a GPU priced from VIDUR's tables (``emulator.sim.gpu_model``),
or a device the user times.

A pair's profile is put together from its parts: the target's times from its device (or
this machine's profile), the draft's from its own, the acceptance from the scenario (no one
measured these pairs here), message sizes from the protocol. The result is an ordinary
profile (``PairProfile``), so the simulator prices it as it prices one measured here, and
its ``record`` names what was modelled and where the acceptance came from.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from emulator.scenario import AcceptanceSpec
from emulator.sim.calibration import CalibrationError, PairProfile
from emulator.sim.device_spec import DeviceSpec, is_device_spec, parse_device_spec
from emulator.sim.gpu_model import MODELLED, GpuModel
from emulator.sim.vidur import SHARED_VIDUR, VidurError
from runtime.message_sizes import message_sizes
from runtime.model_names import DEFAULT_DRAFT, DEFAULT_TARGET
from runtime.profile_store import PROFILE_VERSION

DEVICE_GRID = {
    "batches": [1, 2, 3, 4, 5, 6, 7, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256],
    "tokens": [1, 2, 3, 4, 5, 6, 7, 8, 9, 12, 16],
    "contexts": [0, 512, 1024, 2048, 4096],
    "prompt_tokens": [1, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096],
}
CHARS_PER_TOKEN = 4.0  # a prompt's length without a tokenizer (English, Llama-like vocabularies)


def target_part(spec: DeviceSpec, root: Path = SHARED_VIDUR) -> dict[str, Any]:
    """A target's prefill and verify times on a GPU, on ``DEVICE_GRID``."""
    if spec.gpu is None:
        raise CalibrationError(f"{spec.text}: a target runs on a GPU (MODEL@GPU[:tpK])")
    model = _gpu_model(spec, root)
    grid = DEVICE_GRID
    return {
        "target_prefill_ms": [
            {"prompt_tokens": n, "ms": model.forward([(n, 0)], 1).total_ms}
            for n in grid["prompt_tokens"]
        ],
        "verify_ms": [
            {
                "batch": batch,
                "tokens": tokens,
                "context": context,
                "ms": model.forward([(tokens, context)] * batch).total_ms,
            }
            for batch in grid["batches"]
            for tokens in grid["tokens"]
            for context in grid["contexts"]
        ],
    }


def draft_part(spec: DeviceSpec, root: Path = SHARED_VIDUR) -> dict[str, Any]:
    """A draft's step and prefill times on its device: a round's first token feeds one
    token (two after a fully accepted round), each further one a token, with one row."""
    contexts, prompts = DEVICE_GRID["contexts"], DEVICE_GRID["prompt_tokens"]
    if spec.gpu is None:
        step, prefill = spec.step_ms, spec.prefill_ms_per_token
        assert step is not None and prefill is not None
        steps = [
            {"context": c, "ms": step, "first_ms": step, "first_after_accept_ms": step}
            for c in contexts
        ]
        return {
            "draft_step_ms": steps,
            "draft_prefill_ms": [{"prompt_tokens": n, "ms": prefill * n} for n in prompts],
        }
    model = _gpu_model(spec, root)
    step_ms = {c: model.forward([(1, c)]).total_ms for c in contexts}
    return {
        "draft_step_ms": [
            {
                "context": c,
                "ms": step,
                "first_ms": step,
                "first_after_accept_ms": model.forward([(2, c)], 1).total_ms,
            }
            for c, step in step_ms.items()
        ],
        "draft_prefill_ms": [
            {"prompt_tokens": n, "ms": model.forward([(n, 0)], 1).total_ms} for n in prompts
        ],
    }


def _gpu_model(spec: DeviceSpec, root: Path) -> GpuModel:
    assert spec.gpu is not None
    try:
        return GpuModel(spec.model, spec.gpu, spec.tp, root)
    except VidurError as exc:
        raise CalibrationError(f"{spec.text}: {exc}") from exc


LocalProfile = Callable[[str, str], PairProfile]


def composed_profile(
    target: str,
    draft: str,
    acceptance: AcceptanceSpec | None,
    local: LocalProfile,
    root: Path = SHARED_VIDUR,
) -> PairProfile:
    """The profile of a pair where either side runs on a device (or the acceptance is the
    scenario's): each part from where it is known; ``local(target, draft)`` gives this
    machine's profile of a pair run here."""
    target_spec = parse_device_spec(target) if is_device_spec(target) else None
    draft_spec = parse_device_spec(draft) if is_device_spec(draft) else None
    here_target = None if target_spec else local(target, DEFAULT_DRAFT if draft_spec else draft)
    here_draft = None if draft_spec else local(DEFAULT_TARGET if target_spec else target, draft)
    here = here_target or here_draft
    if acceptance is None:
        if target_spec or draft_spec:
            raise CalibrationError(
                f"no one measured {draft} drafting for {target} here: give the edge group's "
                "acceptance (alpha, first and decay, or per_position, with its source)"
            )
        assert here is not None
        return here
    modelled: list[str] = []
    parts: dict[str, Any] = {}
    if target_spec:
        parts |= target_part(target_spec, root)
    else:
        assert here_target is not None
        parts |= {k: here_target.data[k] for k in ("target_prefill_ms", "verify_ms")}
    if draft_spec:
        parts |= draft_part(draft_spec, root)
    else:
        assert here_draft is not None
        parts |= {k: here_draft.data[k] for k in ("draft_step_ms", "draft_prefill_ms")}
    if any(spec and spec.gpu for spec in (target_spec, draft_spec)):
        modelled.extend(MODELLED)
    data = {
        "version": PROFILE_VERSION,
        "pair": {"target": target, "draft": draft},
        "conditions": {
            "threads": here.threads if here else 1,
            "grid_name": "composed",
            "fingerprint": here.fingerprint if here else None,
            "measured": here.measured if here else None,
            "devices": {
                "target": target_spec.describe() if target_spec else f"{target} (this machine)",
                "draft": draft_spec.describe() if draft_spec else f"{draft} (this machine)",
            },
            "modelled": modelled,
            "acceptance_source": acceptance.source,
        },
        **parts,
        "acceptance": {"per_position": acceptance.per_position()},
        "message_bytes": here.data["message_bytes"] if here else message_sizes(range(0, 17), 16),
        "prompts": here.data["prompts"]
        if here
        else {"template_tokens": 0, "chars_per_token": CHARS_PER_TOKEN, "measured": {}},
    }
    source = f"composed: target {target}, draft {draft}, acceptance {acceptance.source}"
    return PairProfile(data, source)
