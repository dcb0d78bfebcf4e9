"""Model loading, draft variants and clear errors for bad model specs."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from runtime.models import (
    ByteTokenizer,
    LoadedModel,
    ModelError,
    build_tiny_model,
    cache_dir,
    check_compatible,
    load_model,
    make_draft,
)


def test_missing_gguf_and_bad_paths_raise_model_error(tmp_path) -> None:
    with pytest.raises(ModelError, match="GGUF file not found"):
        load_model(str(tmp_path / "absent.gguf"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelError, match="cannot load model"):
        load_model(str(tmp_path / "empty"))
    with pytest.raises(ModelError):
        load_model("./no/such/model")
    with pytest.raises(ModelError, match="unknown dtype"):
        load_model("tiny", dtype="int3")


def test_tokenizer_mismatch_is_refused(tiny_target) -> None:
    class Other(ByteTokenizer):
        def get_vocab(self) -> dict[str, int]:
            return {"x": 0}

    other = LoadedModel(build_tiny_model(seed=5), Other(), "other")
    with pytest.raises(ModelError, match="different tokenizers"):
        check_compatible(tiny_target, other)


def test_disagreeing_draft_controls_acceptance(tiny_target) -> None:
    ids = torch.tensor([list(range(1, 200))])
    with torch.inference_mode():
        reference = tiny_target.model(input_ids=ids).logits.argmax(-1)
        always = make_draft("disagree:1.0", tiny_target).model(input_ids=ids).logits.argmax(-1)
        never = make_draft("disagree:0.0", tiny_target).model(input_ids=ids).logits.argmax(-1)
    assert torch.equal(never, reference)
    assert (always == reference).float().mean() < 0.05
    with pytest.raises(ModelError):
        make_draft("disagree:lots", tiny_target)


@pytest.mark.model
def test_bundled_model_is_cached_as_safetensors(default_pair) -> None:
    target, draft = default_pair
    assert (cache_dir() / "smollm2-135m-instruct" / "model.safetensors").is_file()
    assert target.vocab_size == draft.vocab_size == 49152 and target.eos_ids
    mlp = draft.model.model.layers[0].mlp
    assert "quantized" in type(mlp.down_proj).__module__
    text = target.decode(target.encode_prompt("Hello"))
    assert "Hello" in text


def test_the_bundled_model_converted_on_first_use_makes_an_int8_draft(
    tmp_path, monkeypatch, default_pair
) -> None:
    """The first load converts the GGUF file; the model it returns must be a plain one (the
    GGUF loader's own is marked quantized, and the int8 draft's copy refuses it)."""
    monkeypatch.setenv("DSD_EMU_CACHE", str(tmp_path))
    target = load_model("smollm2")
    assert (tmp_path / "models" / "smollm2-135m-instruct" / "config.json").is_file()
    assert not getattr(target.model, "is_quantized", False)
    draft = make_draft("int8", target)
    assert "quantized" in type(draft.model.model.layers[0].mlp.down_proj).__module__


def test_cli_reports_a_missing_model_in_one_line() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "runtime.draft", "--base", "/nonexistent/model.gguf"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [
        "draft: error: GGUF file not found: /nonexistent/model.gguf"
    ]


def test_a_pickled_checkpoint_is_refused_and_safetensors_load(tmp_path, default_pair) -> None:
    """A ``pytorch_model.bin`` is a pickle (loading it can run code): never loaded."""
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(cache_dir() / "smollm2-135m-instruct")
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
    )
    model = LlamaForCausalLM(config)
    checkpoint = tmp_path / "small"
    model.save_pretrained(checkpoint)
    tokenizer.save_pretrained(checkpoint)
    assert load_model(str(checkpoint)).name == "small"
    (checkpoint / "model.safetensors").unlink()
    torch.save(model.state_dict(), checkpoint / "pytorch_model.bin")
    with pytest.raises(ModelError, match=r"cannot load model .*safetensors"):
        load_model(str(checkpoint))
