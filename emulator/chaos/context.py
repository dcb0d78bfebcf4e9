"""What every fault shares: its outcome, and a folder, an RNG and the tiny draft model with
helpers to start targets and drafters there."""

from __future__ import annotations

import random
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from emulator.paths import ROOT
from runtime.draft import EdgeClient, EdgeSettings
from runtime.events import read_events
from runtime.models import LoadedModel
from runtime.policies import Fixed
from runtime.reference import generate_greedy
from runtime.sampling import SamplingParams
from runtime.serverproc import ServerProcess

SESSION_TIMEOUT_S = 1.0
GREEDY_FULL_LENGTH = SamplingParams(ignore_eos=True)


@dataclass
class Outcome:
    """What one fault did: whether the system survived it, and the evidence."""

    survived: bool
    details: dict[str, Any] = field(default_factory=dict)
    server_crashes: int = 0
    unauthenticated_accepted: int = 0
    fuzz_messages: int = 0


@dataclass
class Chaos:
    """What every fault shares: a folder for its files, a seeded RNG, the tiny target (whose
    greedy output by transformers is the reference lossless output is held to) and its
    draft (which makes requests from this process)."""

    folder: Path
    rng: random.Random
    target: LoadedModel
    draft: LoadedModel
    fuzz_messages: int = 10_000

    def start_target(self, name: str, *args: str) -> ServerProcess:
        base = ["--model", "tiny", "--threads", "1", "--session-timeout", str(SESSION_TIMEOUT_S)]
        return ServerProcess([*base, *args], log=self.folder / f"{name}.jsonl")

    def start_drafter(self, endpoint: str, edge: str, *args: str) -> subprocess.Popen:
        command = [
            sys.executable,
            "-m",
            "runtime.draft",
            "--connect",
            endpoint,
            "--base",
            "tiny",
            "--draft",
            "perturbed:0.1",
            "--edge",
            edge,
            "--ignore-eos",
            "--log",
            str(self.folder / f"{edge}.jsonl"),
            *args,
        ]
        with (self.folder / f"{edge}.txt").open("w") as output:
            return subprocess.Popen(
                command, cwd=ROOT, stdout=output, stderr=subprocess.STDOUT, text=True
            )

    def request(self, endpoint: str, text: str, tokens: int, **client_options: Any) -> list[int]:
        """One greedy request from this process (the reference the others are held to)."""
        settings = EdgeSettings("chaos", Fixed(3), GREEDY_FULL_LENGTH, **client_options)
        client = EdgeClient(endpoint, self.draft, settings)
        try:
            return client.request(self.draft.encode_prompt(text), tokens).output_ids
        finally:
            client.close()

    def greedy_text(self, text: str, tokens: int) -> str:
        """The target's own greedy continuation by transformers' ``generate``: code that
        shares nothing with the runtime's verification, to hold its output to."""
        prompt = self.target.encode_prompt(text)
        return self.target.decode(generate_greedy(self.target, prompt, tokens, ignore_eos=True))

    def wait_for_round(self, edge: str, process: subprocess.Popen, timeout_s: float = 120) -> int:
        """Until the edge has logged a verified round (it is mid-request); returns how many."""
        log = self.folder / f"{edge}.jsonl"
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and process.poll() is None:
            if log.exists():
                rounds = sum(e["event"] == "round" for e in read_events(log))
                if rounds:
                    return rounds
            time.sleep(0.05)
        raise RuntimeError(f"{edge} never verified a round:\n{self.output(edge)}")

    def output(self, edge: str) -> str:
        return (self.folder / f"{edge}.txt").read_text(errors="replace")[-2000:]
