"""VIDUR's published GPU operator profiles (``../shared/vidur``, its PROVENANCE.md): what a
model's decoder layer and a tensor-parallel all-reduce cost on A100, H100 and A40.

Read as published, never copied into the project. A layer's time at a token count is the sum
of its operators' median times (``mlp.csv``: norms, QKV and output projections, RoPE, MLP,
residual add; duplicated rows averaged), linear between the profiled token counts; the
embedding is once per forward. The attention kernel, the final norm and the LM head are not
in these tables: ``emulator.sim.gpu_model`` models them.
"""

from __future__ import annotations

import csv
import os
import statistics
from collections import defaultdict
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from runtime.interpolation import interpolate

# ``DSD_EMU_VIDUR`` where VIDUR's profiles lie elsewhere
SHARED_VIDUR = Path(
    os.environ.get("DSD_EMU_VIDUR") or Path(__file__).resolve().parents[3] / "shared" / "vidur"
)

# per-layer operators in mlp.csv (``emb`` is once per forward, not per layer); a table has
# those its model's layer runs (phi-2's parallel attention and MLP share one norm)
LAYER_OPS = (
    "input_layernorm",
    "attn_pre_proj",
    "attn_rope",
    "attn_post_proj",
    "post_attention_layernorm",
    "mlp_up_proj",
    "mlp_act",
    "mlp_down_proj",
    "add",
)

# decoder layers of each profiled model (``num_hidden_layers`` / ``n_layer`` in its published
# configuration): mlp.csv gives the shape of one layer, not how many there are
LAYERS = {
    "llama-2-7b": 32,
    "llama-2-70b": 80,
    "llama-3-8b": 32,
    "llama-3-70b": 80,
    "codellama-34b-instruct": 48,
    "qwen-72b": 80,
    "internlm-20b": 60,
    "phi-2": 32,
}

# the tensor-parallel network each GPU's all-reduces were timed on (one node: as many devices
# per node as workers)
NETWORKS = {"a100": "a100_dgx", "h100": "h100_dgx"}


class VidurError(ValueError):
    """VIDUR's tables are absent or do not hold what was asked."""


def short_name(folder: str) -> str:
    """A model's name in specs: its folder's, lower-case, without ``-hf`` and ``meta-``."""
    name = folder.lower().removesuffix("-hf")
    return name.removeprefix("meta-")


def models_on(gpu: str, root: Path = SHARED_VIDUR) -> dict[str, Path]:
    """The models VIDUR profiled on ``gpu``, by short name, to their ``mlp.csv``."""
    folder = root / "compute" / gpu
    if not root.is_dir():
        raise VidurError(f"VIDUR's GPU profiles are absent ({root}); see the README")
    if not folder.is_dir():
        known = sorted(p.name for p in (root / "compute").iterdir() if p.is_dir())
        raise VidurError(f"no VIDUR profiles for GPU {gpu!r} (known: {', '.join(known)})")
    return {short_name(p.parent.name): p for p in sorted(folder.glob("*/*/mlp.csv"))}


@dataclass(frozen=True)
class ModelShape:
    """One model's shape, from its table's columns (and ``LAYERS``)."""

    n_head: int
    n_kv_head: int
    n_embd: int
    n_expanded_embd: int
    vocab_size: int
    layers: int

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head


class OperatorTable:
    """One model's ``mlp.csv`` on one GPU: per tensor-parallel degree, the per-layer time and
    the embedding's time by token count."""

    def __init__(self, path: Path, model: str) -> None:
        if model not in LAYERS:
            raise VidurError(f"{path}: the layer count of {model!r} is not known")
        with open(path, newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
        if not rows:
            raise VidurError(f"{path}: no rows")
        first = rows[0]
        self.path = path
        self.shape = ModelShape(
            n_head=int(first["n_head"]),
            n_kv_head=int(first["n_kv_head"]),
            n_embd=int(first["n_embd"]),
            n_expanded_embd=int(first["n_expanded_embd"]),
            vocab_size=int(first["vocab_size"]),
            layers=LAYERS[model],
        )
        columns = [
            f"time_stats.{op}.median" for op in LAYER_OPS if f"time_stats.{op}.median" in first
        ]
        if "time_stats.mlp_down_proj.median" not in columns:
            raise VidurError(f"{path}: not a VIDUR mlp.csv (no per-layer operator times)")
        layer: dict[tuple[int, int], list[float]] = defaultdict(list)
        emb: dict[tuple[int, int], list[float]] = defaultdict(list)
        for row in rows:
            key = (int(row["num_tensor_parallel_workers"]), int(row["num_tokens"]))
            layer[key].append(sum(float(row[column]) for column in columns))
            emb[key].append(float(row["time_stats.emb.median"]))
        self._layer = _by_degree(layer)
        self._emb = _by_degree(emb)

    @property
    def degrees(self) -> list[int]:
        return sorted(self._layer)

    def _points(self, table: dict, tp: int) -> tuple[list[int], list[float]]:
        if tp not in table:
            raise VidurError(
                f"{self.path}: not profiled at tensor parallelism {tp} "
                f"(profiled: {', '.join(map(str, self.degrees))})"
            )
        return table[tp]

    def layer_ms(self, tokens: int, tp: int) -> float:
        """One decoder layer's operators (not attention itself) over ``tokens`` tokens."""
        return interpolate(*self._points(self._layer, tp), tokens)

    def emb_ms(self, tokens: int, tp: int) -> float:
        return interpolate(*self._points(self._emb, tp), tokens)


def _by_degree(
    table: dict[tuple[int, int], list[float]],
) -> dict[int, tuple[list[int], list[float]]]:
    """Per degree, token counts and the mean of their rows' values, sorted."""
    out: dict[int, tuple[list[int], list[float]]] = {}
    for degree in sorted({tp for tp, _ in table}):
        counts = sorted(n for tp, n in table if tp == degree)
        out[degree] = (counts, [statistics.fmean(table[(degree, n)]) for n in counts])
    return out


class AllReduceTable:
    """One GPU's ``all_reduce.csv`` on one node: time by message size per worker count (the
    median over ranks of each rank's median)."""

    def __init__(self, path: Path) -> None:
        by_size: dict[tuple[int, int], list[float]] = defaultdict(list)
        with open(path, newline="", encoding="utf-8") as handle:
            for row in csv.DictReader(handle):
                workers = int(row["num_workers"])
                if int(row["devices_per_node"]) != workers:
                    continue
                by_size[(workers, int(row["size"]))].append(
                    float(row["time_stats.all_reduce.median"])
                )
        self.path = path
        self._points: dict[int, tuple[list[int], list[float]]] = {}
        for workers in sorted({w for w, _ in by_size}):
            sizes = sorted(s for w, s in by_size if w == workers)
            medians = [statistics.median(by_size[(workers, s)]) for s in sizes]
            self._points[workers] = (sizes, medians)

    def ms(self, size_bytes: int, workers: int) -> float:
        if workers not in self._points:
            raise VidurError(
                f"{self.path}: no all-reduce over {workers} workers on one node "
                f"(timed: {', '.join(map(str, sorted(self._points)))})"
            )
        return interpolate(*self._points[workers], size_bytes)


@cache
def operator_table(gpu: str, model: str, root: Path = SHARED_VIDUR) -> OperatorTable:
    models = models_on(gpu, root)
    if model not in models:
        raise VidurError(
            f"VIDUR did not profile {model!r} on {gpu} (profiled: {', '.join(sorted(models))})"
        )
    return OperatorTable(models[model], model)


@cache
def all_reduce_table(gpu: str, root: Path = SHARED_VIDUR) -> AllReduceTable:
    network = NETWORKS.get(gpu)
    path = root / "network" / (network or "") / "all_reduce.csv"
    if network is None or not path.is_file():
        raise VidurError(f"VIDUR timed no all-reduce on {gpu}: tensor parallelism needs one")
    return AllReduceTable(path)
