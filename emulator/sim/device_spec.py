"""Names of models on devices this machine cannot run, for the simulator:
``MODEL@GPU[:tpK]`` (a GPU VIDUR profiled, at tensor parallelism K) and
``MODEL@Nms[,prefill:Mms]`` (a device the user times: a phone, a board; N ms per draft
token, M per prompt token, default N). Parsed without reading any table.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

GPU_NAMES = ("a100", "h100", "a40")  # the GPUs in VIDUR's tables (``emulator.sim.gpu_model``)

_GPU_SPEC = re.compile(r"^(?P<model>[\w.\-]+)@(?P<gpu>[a-z0-9]+)(?::tp(?P<tp>\d+))?$")
_TIMED_SPEC = re.compile(
    r"^(?P<model>[\w.\-]+)@(?P<step>\d+(?:\.\d+)?)ms(?:,prefill:(?P<prefill>\d+(?:\.\d+)?)ms)?$"
)


@dataclass(frozen=True)
class DeviceSpec:
    """A model on a device: a VIDUR GPU at tensor parallelism ``tp``, or per-token times."""

    text: str
    model: str
    gpu: str | None = None
    tp: int = 1
    step_ms: float | None = None  # a timed device's draft token
    prefill_ms_per_token: float | None = None

    def describe(self) -> str:
        if self.gpu is not None:
            return f"{self.model} on {self.gpu} (tensor parallelism {self.tp}, VIDUR's tables)"
        return (
            f"{self.model} at {self.step_ms} ms per draft token and "
            f"{self.prefill_ms_per_token} ms per prompt token (as given)"
        )


def is_device_spec(spec: str) -> bool:
    """Whether a scenario's model names a device (``@``) rather than a model run here."""
    return "@" in spec


def parse_device_spec(text: str) -> DeviceSpec:
    """``MODEL@GPU[:tpK]`` or ``MODEL@Nms[,prefill:Mms]``; a ValueError that says which."""
    timed = _TIMED_SPEC.match(text)
    if timed:
        step = float(timed["step"])
        prefill = float(timed["prefill"]) if timed["prefill"] else step
        if step <= 0:
            raise ValueError(f"{text!r}: the per-token time must be > 0 ms")
        return DeviceSpec(text, timed["model"], step_ms=step, prefill_ms_per_token=prefill)
    gpu = _GPU_SPEC.match(text)
    if gpu is None:
        raise ValueError(
            f"{text!r}: a device model is MODEL@GPU[:tpK] (GPU one of {', '.join(GPU_NAMES)}, e.g. "
            "llama-2-70b@h100:tp4) or MODEL@Nms[,prefill:Mms] (e.g. llama-3.2-1b@25ms)"
        )
    if gpu["gpu"] not in GPU_NAMES:
        raise ValueError(f"{text!r}: unknown GPU {gpu['gpu']!r} (known: {', '.join(GPU_NAMES)})")
    tp = int(gpu["tp"] or 1)
    if tp not in (1, 2, 4, 8):
        raise ValueError(f"{text!r}: tensor parallelism is 1, 2, 4 or 8 in VIDUR's tables")
    return DeviceSpec(text, gpu["model"], gpu=gpu["gpu"], tp=tp)
