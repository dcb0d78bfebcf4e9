"""An emulated edge's drafter (``draft: replay``): the real draft's tokens, replayed.

The process holds no model and never imports torch. Its tokens are the real draft model's,
recorded by the profiler along the target's greedy output of each prompt
(``runtime.profile.draft_replay``): the draft's token at every position as a round's first
token (fed one token after a rejection, two after a fully accepted round) and as a
round's further token, and after each miss the draft's own continuation up to the
profile's largest window. Under greedy verification that is everything a round can ask.
Its time is the profile's draft time at that context (``runtime.draft_timing``) times the
edge's ``speed``, spent on the edge's CPU quota as a real draft's would be
(``runtime.cpuquota``).

Where the committed text leaves the tables (the target's output flipped under another
batch shape, a request longer than profiled, a first forward of another width), the
tokens come from one shared real draft process (``runtime.draft_service``) over a local
socket, outside the emulated network; each round says which (``proposal_source``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgpack
import zmq

from runtime.cpuquota import CpuQuota
from runtime.draft_timing import DraftTiming
from runtime.profile_store import load_profile
from runtime.proposal import Proposal, Timing

SERVICE_TIMEOUT_S = 60.0


class ReplayError(ValueError):
    """The profile holds no replay tables for what the edge was asked to run."""


@dataclass(frozen=True)
class PromptTable:
    """One prompt's tables; positions index the target's output (0: its prefill token)."""

    prompt_ids: list[int]
    target_ids: list[int]
    one_step: list[int]  # the draft's token at each position, fed one token
    after_accept: list[int]  # the same as a round's first token fed two
    continue_one_step: dict[int, list[int]]  # after a miss fed one: the draft's own next ones
    continue_after_accept: dict[int, list[int]]

    @classmethod
    def from_profile(cls, entry: dict[str, Any]) -> PromptTable:
        one, two = entry["one_step"], entry["after_accept"]
        return cls(
            list(entry["prompt_ids"]),
            list(entry["target_ids"]),
            list(one["draft_ids"]),
            list(two["draft_ids"]),
            {int(p): list(ids) for p, ids in one["continuations"].items()},
            {int(p): list(ids) for p, ids in two["continuations"].items()},
        )

    def follows(self, output: list[int]) -> bool:
        """Whether the request's output so far is the recorded greedy output."""
        return output == self.target_ids[: len(output)]

    def proposal(self, position: int, gamma: int, fed: int) -> list[int] | None:
        """The draft's ``gamma`` tokens for a round drafting output ``position`` on, whose
        first forward feeds ``fed`` tokens; None where the tables do not hold them."""
        if fed not in (1, 2) or not 1 <= position < len(self.target_ids):
            return None
        firsts, continuations = (
            (self.one_step, self.continue_one_step)
            if fed == 1
            else (self.after_accept, self.continue_after_accept)
        )
        tokens = [firsts[position]]
        at = position
        while len(tokens) < gamma:
            if tokens[-1] != self.target_ids[at]:  # the draft went its own way here
                tail = continuations.get(at, [])
                needed = gamma - len(tokens)
                if len(tail) < needed:
                    return None
                return tokens + tail[:needed]
            at += 1
            if at >= len(self.target_ids):
                return None
            tokens.append(self.one_step[at])  # further tokens are fed one at a time
            continuations = self.continue_one_step
        return tokens


class ReplayTables:
    """A profile's replay tables, by prompt text, and the draft timing that goes with them."""

    def __init__(self, profile: dict[str, Any], source: str) -> None:
        replay = profile.get("replay")
        if not replay:
            raise ReplayError(
                f"{source}: profile version {profile.get('version')} holds no replay tables "
                "(profile version 8 records them)"
            )
        self.gamma = int(replay["gamma"])
        self.eos_ids = set(replay["eos_ids"])
        self.by_text = {
            text: PromptTable.from_profile(entry["replay"])
            for text, entry in profile["acceptance"]["per_prompt"].items()
        }
        self._by_ids = {tuple(table.prompt_ids): table for table in self.by_text.values()}
        self.timing = DraftTiming(profile)
        self.source = source

    @classmethod
    def load(cls, path: str | Path) -> ReplayTables:
        try:
            profile = load_profile(Path(path))
        except (OSError, ValueError) as exc:
            raise ReplayError(f"{path}: not a readable profile ({exc})") from exc
        try:
            return cls(profile, str(path))
        except KeyError as exc:
            raise ReplayError(f"{path}: the replay tables miss {exc}") from exc

    def table(self, text: str) -> PromptTable:
        found = self.by_text.get(text)
        if found is None:
            raise ReplayError(
                f"the prompt {text[:40]!r} is not among the {len(self.by_text)} prompts "
                f"{self.source} recorded; profile with this prompt set"
            )
        return found

    def by_prompt(self, prompt_ids: list[int]) -> PromptTable:
        found = self._by_ids.get(tuple(prompt_ids))
        if found is None:
            raise ReplayError(f"no replay table for a prompt of {len(prompt_ids)} tokens")
        return found


class DraftServiceClient:
    """The edge's line to the shared real draft (``runtime.draft_service``)."""

    def __init__(self, endpoint: str, context: zmq.Context | None = None) -> None:
        self.socket = (context or zmq.Context.instance()).socket(zmq.REQ)
        self.socket.setsockopt(zmq.LINGER, 0)
        self.socket.setsockopt(zmq.RCVTIMEO, int(SERVICE_TIMEOUT_S * 1000))
        self.socket.connect(endpoint)
        self.endpoint = endpoint

    def _ask(self, message: dict[str, Any]) -> dict[str, Any]:
        self.socket.send(msgpack.packb(message))
        try:
            reply = msgpack.unpackb(self.socket.recv(), raw=False)
        except zmq.Again as exc:
            raise ReplayError(
                f"the shared draft at {self.endpoint} did not answer in {SERVICE_TIMEOUT_S:.0f} s"
            ) from exc
        if "error" in reply:
            raise ReplayError(f"the shared draft refused: {reply['error']}")
        return reply

    def propose(self, key: str, committed: list[int], gamma: int) -> list[int]:
        return list(
            self._ask({"op": "propose", "key": key, "ids": committed, "gamma": gamma})["tokens"]
        )

    def forget(self, key: str) -> None:
        self._ask({"op": "forget", "key": key})

    def close(self) -> None:
        self.socket.close(0)


class EdgeClock:
    """An emulated edge's CPU: its quota's periods on the epoch clock from ``origin``."""

    def __init__(self, quota: CpuQuota, speed: float, origin: float | None = None) -> None:
        self.quota = quota
        self.speed = speed
        self.origin = time.time() if origin is None else origin

    def spend(self, work_ms: float, started: float) -> float:
        """Sleep until ``work_ms`` of the profile's CPU time (times the speed), begun at
        epoch ``started``, is done on the quota; returns the CPU time charged."""
        cpu_ms = work_ms * self.speed
        start_ms = (started - self.origin) * 1000.0
        end = self.origin + self.quota.finish(start_ms, cpu_ms) / 1000.0
        while (left := end - time.time()) > 0:
            time.sleep(left)
        return cpu_ms


class ReplayDraft:
    """One request's emulated drafter, with ``DraftState``'s interface (``Drafter``)."""

    def __init__(
        self,
        table: PromptTable,
        timing: DraftTiming,
        clock: EdgeClock,
        service: DraftServiceClient | None,
        key: str,
    ) -> None:
        self.table = table
        self.timing = timing
        self.clock = clock
        self.service = service
        self.key = key
        self.prompt_length = len(table.prompt_ids)
        # what a real draft's cache would hold (as ``DraftState`` counts it): the committed
        # positions in it, and all of them
        self.valid = 0
        self.cached = 0
        self.base = 0
        self.on_table = True
        self.asked_service = False

    def prefill(self, prompt: list[int]) -> Timing:
        started = time.time()
        cpu_ms = self.clock.spend(self.timing.prefill_ms(len(prompt)), started)
        self.valid = self.cached = len(prompt)
        return Timing((time.time() - started) * 1000.0, cpu_ms)

    def propose(self, committed: list[int], gamma: int) -> Proposal:
        started = time.time()
        self.base = len(committed)
        if gamma == 0:
            return Proposal([], None, None, 0.0, source="table")  # nothing to draft
        fed = self.base - self.valid
        output = committed[self.prompt_length :]
        self.on_table = self.on_table and self.table.follows(output)
        tokens = self.table.proposal(len(output), gamma, fed) if self.on_table else None
        source, fallback_ms = "table", 0.0
        if tokens is None:
            if self.service is None:
                raise ReplayError("the tables end here and no shared draft was given")
            asked = time.time()
            tokens = self.service.propose(self.key, committed, gamma)
            self.asked_service = True
            source, fallback_ms = "fallback", (time.time() - asked) * 1000.0
        work = self.timing.round_ms(gamma, self.base, after_accept=fed == 2)
        cpu_ms = self.clock.spend(work, started)
        self.cached = self.base + gamma - 1
        draft_ms = (time.time() - started) * 1000.0
        return Proposal(tokens, None, None, draft_ms, cpu_ms, source, fallback_ms)

    def accept(self, accepted: int) -> None:
        self.valid = min(self.cached, self.base + accepted)

    def close(self) -> None:
        """The request is over: the shared draft may forget it."""
        if self.asked_service and self.service is not None:
            self.service.forget(self.key)
