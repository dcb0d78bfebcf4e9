"""Per-session KV caches: extend, roll back, and run many sessions in one forward pass.

Each session owns an unpadded ``DynamicCache``. To batch, the caches are left-padded to a
common length and concatenated; the new tokens are right-padded; an attention mask hides
the padding and per-row ``position_ids`` keep every row's positions its own. After the
pass each row's slice is cut back out, so a session's cache never depends on who it was
batched with.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from transformers import DynamicCache


def new_cache() -> DynamicCache:
    return DynamicCache()


def cache_length(cache: DynamicCache) -> int:
    return int(cache.get_seq_length())


def crop_to(cache: DynamicCache, length: int) -> None:
    """Roll back the cache to its first ``length`` positions (transformers 5 crops by count)."""
    excess = cache_length(cache) - length
    if excess > 0:
        cache.crop(-excess)


@dataclass
class Row:
    """One session's share of a batched forward: its cache and the tokens to append."""

    cache: DynamicCache
    tokens: list[int]


@torch.inference_mode()
def forward_one(
    model: nn.Module, cache: DynamicCache, tokens: list[int], keep: int
) -> torch.Tensor:
    """Append ``tokens`` to one cache; return logits [keep, V] for the last ``keep`` tokens."""
    device = next(model.parameters()).device
    ids = torch.tensor([tokens], dtype=torch.long, device=device)
    out = model(input_ids=ids, cache=cache, use_cache=True, logits_to_keep=keep)
    return out.logits[0].float()


@torch.inference_mode()
def forward_rows(model: nn.Module, rows: list[Row]) -> list[torch.Tensor]:
    """Append each row's tokens to its cache in one pass; return each row's logits [m_i, V]."""
    if len(rows) == 1:
        row = rows[0]
        return [forward_one(model, row.cache, row.tokens, len(row.tokens))]
    device = next(model.parameters()).device
    lengths = [cache_length(r.cache) for r in rows]
    past = max(lengths)
    width = max(len(r.tokens) for r in rows)
    batch = len(rows)
    ids = torch.zeros((batch, width), dtype=torch.long, device=device)
    mask = torch.zeros((batch, past + width), dtype=torch.long, device=device)
    positions = torch.zeros((batch, width), dtype=torch.long, device=device)
    for i, (row, length) in enumerate(zip(rows, lengths, strict=True)):
        m = len(row.tokens)
        ids[i, :m] = torch.tensor(row.tokens, dtype=torch.long)
        mask[i, past - length : past + m] = 1
        positions[i] = torch.arange(length, length + width)
    batched = _stack_left_padded([r.cache for r in rows], lengths, past)
    out = model(
        input_ids=ids,
        attention_mask=mask,
        position_ids=positions,
        cache=batched,
        use_cache=True,
        logits_to_keep=width,
    )
    results = []
    for i, (row, length) in enumerate(zip(rows, lengths, strict=True)):
        m = len(row.tokens)
        start = past - length
        layers = [
            (keys[i : i + 1, :, start : past + m], values[i : i + 1, :, start : past + m])
            for keys, values in map(_tensors, batched.layers)
        ]
        _replace_layers(row.cache, layers)
        results.append(out.logits[i, :m].float())
    return results


def _stack_left_padded(caches: list[DynamicCache], lengths: list[int], past: int) -> DynamicCache:
    """One batch cache from several: each row left-padded with zeros to ``past`` positions."""
    layer_data = []
    for layer_index in range(len(caches[0].layers)):
        keys, values = [], []
        for cache, length in zip(caches, lengths, strict=True):
            pad = past - length
            k, v = _tensors(cache.layers[layer_index])
            if pad:
                k = nn.functional.pad(k, (0, 0, pad, 0))
                v = nn.functional.pad(v, (0, 0, pad, 0))
            keys.append(k)
            values.append(v)
        layer_data.append((torch.cat(keys), torch.cat(values)))
    return DynamicCache(layer_data)


def _tensors(layer: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """A cache layer's keys and values: the models here have full-attention layers alone,
    which transformers types as one member of a union of layer kinds."""
    return layer.keys, layer.values


def _replace_layers(cache: DynamicCache, layers: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
    layer: Any
    for layer, (keys, values) in zip(cache.layers, layers, strict=True):
        layer.keys = keys.contiguous()
        layer.values = values.contiguous()
