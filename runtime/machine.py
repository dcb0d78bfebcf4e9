"""What makes this machine compute at its own speed: a fingerprint that a profile records, so
that a profile measured on one machine is never taken for another's.

The fingerprint holds what torch's CPU kernels depend on — the processor model and the
instruction-set flags its kernels dispatch on (AVX2, AVX-512, VNNI, AMX, ...) — the core
count, the torch and transformers versions, and the thread count the profile runs with.
It is read without importing torch, since the simulator's processes never load a model.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import re
from importlib import metadata
from pathlib import Path
from typing import Any

CPUINFO = Path("/proc/cpuinfo")
# the flags torch's CPU kernels (oneDNN, FBGEMM, its own vectorised ops) choose paths by
KERNEL_FLAGS = re.compile(r"^(avx.*|amx.*|.*vnni.*|fma|f16c|sse4_2)$")


HEADLINE_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "avx_vnni", "amx_int8")


def _cpuinfo(text: str) -> tuple[str | None, list[str]]:
    """The first processor's model name and its kernel-relevant flags."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    flags = fields.get("flags") or fields.get("Features") or ""
    return fields.get("model name"), sorted(f for f in flags.split() if KERNEL_FLAGS.match(f))


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def fingerprint(threads: int) -> dict[str, Any]:
    """This machine as a profile of ``threads`` torch threads depends on it."""
    try:
        model, flags = _cpuinfo(CPUINFO.read_text())
    except OSError:
        model, flags = None, []
    return {
        "cpu": model or platform.processor() or platform.machine(),
        "isa": flags,
        "cores": os.cpu_count(),
        "arch": platform.machine(),
        "torch": _version("torch"),
        "transformers": _version("transformers"),
        "threads": threads,
    }


def fingerprint_id(print_: dict[str, Any]) -> str:
    """A short, stable name for a fingerprint (its fields hashed)."""
    canonical = json.dumps(print_, sort_keys=True).encode()
    return hashlib.sha256(canonical).hexdigest()[:12]


def describe(print_: dict[str, Any]) -> str:
    """One line a person can read: 'AMD EPYC, 2 cores, avx2 avx512f ..., torch 2.13.0'."""
    isa = " ".join(flag for flag in HEADLINE_FLAGS if flag in print_["isa"])
    return (
        f"{print_['cpu']}, {print_['cores']} cores, {isa or 'no AVX2'}, torch {print_['torch']}, "
        f"transformers {print_['transformers']}, {print_['threads']} thread(s)"
    )
