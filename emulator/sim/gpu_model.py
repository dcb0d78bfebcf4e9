"""A forward pass of a model on a data-centre GPU: VIDUR's measured operators plus what its
tables lack, modelled and named wherever a result uses them.

Measured (``emulator.sim.vidur``): each decoder layer's operators at the forward's token
count, the embedding, and at tensor parallelism k > 1 two all-reduces per layer of the
forward's activations. Modelled (a roofline, the slower of memory and compute):

- **attention** over the KV cache: each row reads its cache and its new tokens' keys and
  values (2 x kv heads x head size x 2 bytes per token and layer) at the GPU's memory
  bandwidth, or does 4 x heads x head size multiply-adds per (query, key) pair causally at its
  peak fp16 rate, whichever is slower;
- the **LM head**: its weights (vocabulary x width x 2 bytes) read once, or 2 x vocabulary x
  width operations per token that needs logits, whichever is slower (the final norm is left
  out: one element-wise pass).

Heads, KV heads and the LM head are split over the k workers. Vendor figures (dense fp16
tensor-core peak, memory bandwidth) are in ``GPUS``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from emulator.sim.vidur import SHARED_VIDUR, ModelShape, all_reduce_table, operator_table

BYTES = 2  # fp16 weights, activations and KV cache, as VIDUR profiled them

MODELLED = (
    "attention over the KV cache (roofline: KV bytes at memory bandwidth, or causal "
    "multiply-adds at peak fp16)",
    "LM head (roofline: its weights at memory bandwidth, or its multiply-adds at peak fp16)",
)


@dataclass(frozen=True)
class Gpu:
    name: str
    bandwidth: float  # bytes/s
    peak_flops: float  # dense fp16 tensor-core operations/s
    source: str


GPUS = {
    "a100": Gpu("a100", 2.0e12, 312e12, "NVIDIA A100 80GB SXM datasheet"),
    "h100": Gpu("h100", 3.35e12, 989e12, "NVIDIA H100 SXM datasheet"),
    "a40": Gpu("a40", 0.696e12, 149.7e12, "NVIDIA A40 datasheet"),
}


def kv_bytes_per_token(shape: ModelShape) -> int:
    """Keys and values of one token in one layer."""
    return 2 * shape.n_kv_head * shape.head_dim * BYTES


def attention_ms(shape: ModelShape, gpu: Gpu, tp: int, rows: list[tuple[int, int]]) -> float:
    """Attention of every layer for rows of (new tokens, cached context), batched: the
    slower of the bytes read and the operations done, over the whole batch."""
    read = sum((context + new) * kv_bytes_per_token(shape) for new, context in rows)
    # query i of a row (0-based) attends to its context and to new tokens 0..i
    pairs = sum(new * context + new * (new + 1) // 2 for new, context in rows)
    flops = 4 * shape.n_head * shape.head_dim * pairs
    per_layer = max(read / gpu.bandwidth, flops / gpu.peak_flops) / tp
    return per_layer * shape.layers * 1000.0


def lm_head_ms(shape: ModelShape, gpu: Gpu, tp: int, logits_tokens: int) -> float:
    """The LM head for ``logits_tokens`` tokens: the slower of its weights read and its
    operations."""
    weights = shape.vocab_size * shape.n_embd * BYTES
    flops = 2 * logits_tokens * shape.vocab_size * shape.n_embd
    return max(weights / gpu.bandwidth, flops / gpu.peak_flops) / tp * 1000.0


@dataclass(frozen=True)
class ForwardTime:
    """One forward pass's time, by where each part comes from."""

    layers_ms: float  # measured operators x layers
    all_reduce_ms: float  # measured, 2 per layer at tensor parallelism > 1
    embedding_ms: float  # measured
    attention_ms: float  # modelled
    lm_head_ms: float  # modelled

    @property
    def total_ms(self) -> float:
        return (
            self.layers_ms
            + self.all_reduce_ms
            + self.embedding_ms
            + self.attention_ms
            + self.lm_head_ms
        )


class GpuModel:
    """A model on a GPU at tensor parallelism ``tp``, priced from VIDUR's tables."""

    def __init__(self, model: str, gpu: str, tp: int = 1, root: Path = SHARED_VIDUR) -> None:
        self.table = operator_table(gpu, model, root)
        self.shape = self.table.shape
        self.gpu = GPUS[gpu]
        self.tp = tp
        self.table.layer_ms(1, tp)  # an unprofiled degree is refused now, not mid-run
        self._all_reduce = all_reduce_table(gpu, root) if tp > 1 else None

    def forward(
        self, rows: list[tuple[int, int]], logits_per_row: int | None = None
    ) -> ForwardTime:
        """One batched forward of rows of (new tokens, cached context); logits for
        ``logits_per_row`` tokens of each row (default: all of its new tokens)."""
        tokens = sum(new for new, _ in rows)
        logits = sum(new if logits_per_row is None else logits_per_row for new, _ in rows)
        layers = self.shape.layers
        all_reduce = 0.0
        if self._all_reduce is not None:
            size = tokens * self.shape.n_embd * BYTES
            all_reduce = 2 * layers * self._all_reduce.ms(size, self.tp)
        return ForwardTime(
            layers_ms=self.table.layer_ms(tokens, self.tp) * layers,
            all_reduce_ms=all_reduce,
            embedding_ms=self.table.emb_ms(tokens, self.tp),
            attention_ms=attention_ms(self.shape, self.gpu, self.tp, rows),
            lm_head_ms=lm_head_ms(self.shape, self.gpu, self.tp, logits),
        )
