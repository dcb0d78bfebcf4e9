"""A model pair's profile as the simulator uses it: compute times, acceptance, message sizes.

Everything here comes from a pair's profile JSON (``runtime.profile``), measured by
microbenchmarks; nothing comes from an end-to-end run. Between grid points times are
interpolated linearly (trilinearly for the verify grid), beyond them extrapolated from the
last segment, so a batch larger than profiled costs proportionally more rather than the same.
"""

from __future__ import annotations

import importlib.resources
import random
from pathlib import Path
from typing import Any

from runtime.draft_timing import DraftTiming
from runtime.interpolation import interpolate, profile_points, segment
from runtime.machine import fingerprint_id
from runtime.profile_store import load_profile, profile_name

PRIOR_ROUNDS = 10
# package data: the committed reference profiles, wherever the package is installed
PROFILES_DIR = Path(str(importlib.resources.files("emulator.sim") / "reference_profiles"))


def sample_run(table: list[float], limit: int, rng: random.Random, start: int = 0) -> int:
    """How many drafted tokens in a row the target would accept, counting at most ``limit``:
    token i is accepted with probability ``table[i]``, given that tokens 0..i-1 were. With
    ``start`` > 0, continues a run already known to be that long."""
    if limit > len(table):
        table.extend([table[-1]] * limit)
    run = start
    draw = rng.random
    while run < limit and draw() < table[run]:
        run += 1
    return run


class CalibrationError(ValueError):
    """No usable profile for a model pair."""


class PairProfile:
    """Lookups into one profile; results are memoised (the simulator asks the same often)."""

    def __init__(self, data: dict[str, Any], source: str) -> None:
        self.data = data  # as read: a composed profile takes its parts (``device_profile``)
        self.source = source
        self.version = data["version"]
        self.pair = data["pair"]
        conditions = data["conditions"]
        self.threads = int(conditions.get("threads") or conditions["torch_threads"])
        # the machine it was measured on (``runtime.machine``); None in profiles made before
        self.fingerprint: dict[str, Any] | None = conditions.get("fingerprint")
        self.measured = conditions.get("measured")
        self.grid_name = conditions.get("grid_name", "full")
        self.draft_timing = DraftTiming(data)
        self._target_prefill = profile_points(data["target_prefill_ms"], "prompt_tokens")
        grid = data["verify_ms"]
        self.batches = sorted({p["batch"] for p in grid})
        self.tokens = sorted({p["tokens"] for p in grid})
        self.contexts = sorted({p["context"] for p in grid})
        table = {(p["batch"], p["tokens"], p["context"]): p["ms"] for p in grid}
        missing = len(self.batches) * len(self.tokens) * len(self.contexts) - len(table)
        if missing:
            raise CalibrationError(f"{source}: the verify grid misses {missing} points")
        self._verify_table = table
        self.acceptance = [float(a or 0.0) for a in data["acceptance"]["per_position"]]
        self._per_prompt = data["acceptance"].get("per_prompt", {})
        self._matches = self._marks("matches")
        self._matches_after_accept = self._marks("matches_after_accept")
        sizes = data["message_bytes"]
        self._open_bytes = self._pairs(sizes["open"])
        self._verify_bytes = dict(sizes["verify_greedy"])
        self.verdict_bytes = int(sizes["verdict"])
        self.opened_bytes = int(sizes["opened"])
        self.close_bytes = int(sizes["close"])
        self.closed_bytes = int(sizes["closed"])
        prompts = data["prompts"]
        self._template_tokens = int(prompts["template_tokens"])
        self._chars_per_token = float(prompts["chars_per_token"])
        self._measured_prompts = dict(prompts["measured"])
        # per role and op, CPU time beside the other role's work on another CPU over alone
        # (``runtime.interference``), where resolved; empty in profiles before version 5,
        # on one CPU and where no ratio was resolved
        self.interference: dict[str, dict[str, float]] = {
            role: resolved
            for role, ops in data.get("interference", {}).items()
            if role in ("target", "draft")
            and (
                resolved := {
                    op: float(m["ratio"])
                    for op, m in ops.items()
                    if isinstance(m, dict) and m.get("resolved")
                }
            )
        }
        # per count of drafters (replicas) taking turns on one CPU, a draft's (verification's)
        # CPU time there over alone (``runtime.timesharing``), where resolved; empty in
        # profiles before version 6 (9)
        self.time_sharing = _resolved_sharing(data.get("time_sharing", {}))
        self.target_time_sharing = _resolved_sharing(data.get("target_time_sharing", {}))
        # a batch of rows of unequal cache lengths over one of equal rows
        # (``runtime.profile.unequal_rows_cost``); 1 in profiles before version 10
        self.unequal_rows = float(data.get("unequal_rows", {}).get("ratio", 1.0))
        self._memo: dict[tuple, float] = {}

    def sharing_ratio(self, computing: int) -> float:
        """A draft's CPU time while ``computing`` drafters take turns on its CPU, over its
        time alone."""
        return _sharing_ratio(self.time_sharing, computing)

    def target_sharing_ratio(self, computing: int) -> float:
        """A verification's CPU time while ``computing`` replicas take turns on its CPU,
        over its time alone."""
        return _sharing_ratio(self.target_time_sharing, computing)

    def record(self) -> dict[str, Any]:
        """What a run's results say of the profile its simulation used."""
        machine = self.fingerprint
        return {
            "path": self.source,
            "grid": self.grid_name,
            "measured": self.measured,
            "fingerprint_id": fingerprint_id(machine) if machine else None,
            "fingerprint": machine,
            "interference": self.interference,
            "time_sharing": self.time_sharing,
            "target_time_sharing": self.target_time_sharing,
            "unequal_rows": self.unequal_rows,
            **{
                key: self.data["conditions"][key]
                for key in ("devices", "modelled", "acceptance_source")
                if key in self.data["conditions"]
            },
        }

    def _marks(self, key: str) -> dict[str, list[bool]]:
        return {
            text: [mark == "1" for mark in counts[key]]
            for text, counts in self._per_prompt.items()
            if key in counts
        }

    @staticmethod
    def _pairs(pairs: list[list[float]]) -> tuple[list[float], list[float]]:
        ordered = sorted(pairs)
        return [p[0] for p in ordered], [p[1] for p in ordered]

    # -- compute times (ms, on the profiled thread count and a whole core) ----------------
    def draft_step_ms(self, context: int) -> float:
        return self.draft_timing.step_ms(context)

    def draft_ms(self, gamma: int, context: int, after_accept: bool = False) -> float:
        return self.draft_timing.round_ms(gamma, context, after_accept)

    def draft_prefill_ms(self, prompt_tokens: int) -> float:
        return self.draft_timing.prefill_ms(prompt_tokens)

    def target_prefill_ms(self, prompt_tokens: int) -> float:
        return interpolate(*self._target_prefill, prompt_tokens)

    def verify_ms(self, batch: int, tokens: int, context: int) -> float:
        """One batched forward: ``batch`` rows of ``tokens`` new tokens over ``context``."""
        key = (batch, tokens, context)
        cached = self._memo.get(key)
        if cached is not None:
            return cached
        (ib, wb), (it, wt), (ic, wc) = (
            segment(self.batches, batch),
            segment(self.tokens, tokens),
            segment(self.contexts, context),
        )
        total = 0.0
        for db, fb in ((0, 1 - wb), (1, wb)):
            for dt, ft in ((0, 1 - wt), (1, wt)):
                for dc, fc in ((0, 1 - wc), (1, wc)):
                    weight = fb * ft * fc
                    if weight:
                        point = (
                            self.batches[min(ib + db, len(self.batches) - 1)],
                            self.tokens[min(it + dt, len(self.tokens) - 1)],
                            self.contexts[min(ic + dc, len(self.contexts) - 1)],
                        )
                        total += weight * self._verify_table[point]
        floor = min(self._verify_table.values()) * 0.5
        self._memo[key] = value = max(floor, total)
        return value

    # -- acceptance ----------------------------------------------------------------------
    def acceptance_table(self, text: str | None = None) -> list[float]:
        """Per-position acceptance for a prompt: the profile's own counts for that prompt
        where it measured it (acceptance depends on what is being written), drawn towards
        the pooled table by ``PRIOR_ROUNDS`` rounds' worth of weight; else the pooled one."""
        pooled = self.acceptance
        counts = self._per_prompt.get(text) if text is not None else None
        if counts is None:
            table = list(pooled)
        else:
            table = [
                (accepted + PRIOR_ROUNDS * prior) / (reached + PRIOR_ROUNDS)
                for accepted, reached, prior in zip(
                    counts["accepted"], counts["reached"], pooled, strict=True
                )
            ]
        return table + [table[-1]] * 32  # positions past the profiled window: the last value

    def greedy_matches(self, text: str) -> list[bool]:
        """Where the profile ran this prompt: per output position, whether the draft's
        greedy token was the target's (``runtime.profile.greedy_matches``); else empty."""
        return self._matches.get(text, [])

    def greedy_matches_after_accept(self, text: str) -> list[bool]:
        """The same for a round's first draft token after a fully accepted round (two
        tokens fed in one forward: ``runtime.profile.draft_matches_after_accept``); empty
        where the profile did not measure it (version 2)."""
        return self._matches_after_accept.get(text, [])

    # -- sizes ---------------------------------------------------------------------------
    def open_bytes(self, prompt_tokens: int) -> int:
        return round(interpolate(*self._open_bytes, prompt_tokens))

    def verify_bytes(self, gamma: int) -> int:
        if gamma in self._verify_bytes:
            return int(self._verify_bytes[gamma])
        top = max(self._verify_bytes)
        per_token = (self._verify_bytes[top] - self._verify_bytes[0]) / max(1, top)
        return round(self._verify_bytes[top] + (gamma - top) * per_token)

    def prompt_tokens(self, text: str) -> int:
        """The prompt's length in tokens: measured when the profile saw it, else estimated."""
        if text in self._measured_prompts:
            return int(self._measured_prompts[text])
        return self._template_tokens + max(1, round(len(text) / self._chars_per_token))


def _resolved_sharing(measured: dict[str, Any]) -> dict[int, float]:
    """A profile's time-sharing ratios by count of processes taking turns, where resolved."""
    return {
        int(sharers): float(m["ratio"])
        for sharers, m in measured.get("sharers", {}).items()
        if m.get("resolved")
    }


def _sharing_ratio(ratios: dict[int, float], computing: int) -> float:
    """The CPU time of an op while ``computing`` processes take turns on its CPU, over its
    time alone: between the profiled counts linear, past them extended linearly."""
    if computing <= 1 or not ratios:
        return 1.0
    counts = sorted(ratios)
    return interpolate([1, *counts], [1.0, *(ratios[n] for n in counts)], computing)


MIN_WATCHED = 3  # a watch's probes that stand for a host's speed instead of its own two


def host_probes(
    probes: list[dict[str, Any]], host: str, cpu_plan: dict[str, str] | None
) -> list[dict[str, Any]]:
    """The speed probes that stand for ``host``'s speed during an emulated run (``cloud``
    for the target): those the speed watch on its CPU timed through the run
    (``runtime.speedwatch``), where it timed at least ``MIN_WATCHED``; else the host's own,
    one before the workload and one after."""
    role = "target" if host == "cloud" else "draft"
    cpu = (cpu_plan or {}).get(host)
    watched = [
        p
        for p in probes
        if p.get("at") == "during" and p["role"] == role and p["proc"] == f"watch-cpu{cpu}"
    ]
    if cpu is not None and len(watched) >= MIN_WATCHED:
        return watched
    own = "target" if host == "cloud" else host
    return [p for p in probes if p.get("at") != "during" and p["proc"] == own]


def watched(probes: list[dict[str, Any]], host: str, cpu_plan: dict[str, str] | None) -> bool:
    """Whether a speed watch's probes set ``host``'s speed: taken beside whatever the other
    CPUs ran, they hold its interference already."""
    chosen = host_probes(probes, host, cpu_plan)
    return bool(chosen) and chosen[0].get("at") == "during"


def speed_source(probes: list[dict[str, Any]], host: str, cpu_plan: dict[str, str] | None) -> str:
    """Which probes set ``host``'s speed, in words for the run's notes."""
    if watched(probes, host, cpu_plan):
        return f"{len(host_probes(probes, host, cpu_plan))} probes through the run"
    return "probed before and after"


def grid_ms(
    profile: PairProfile,
    probe: dict[str, Any],
    tokens: int | None = None,
    batch: int | None = None,
) -> float:
    """What the profile's grid prices the op a speed probe timed (``tokens`` per row and
    ``batch`` rows for a target's probe at another shape). The ratio of a run's probe to it
    scales the grid, so that the simulation prices that op at what the run's probes
    measured; a separate probe in the profile would add its own drift (8-19 % from the grid
    in one quick profile)."""
    if probe["role"] == "draft":
        return profile.draft_ms(probe["gamma"], probe["context"])
    return profile.verify_ms(batch or probe["batch"], tokens or probe["tokens"], probe["context"])


def probed_speeds(
    probes: list[dict[str, Any]],
    target: PairProfile,
    drafts: dict[str, PairProfile],
    cpu_plan: dict[str, str] | None = None,
) -> dict[str, float]:
    """Per host of an emulated run (``cloud`` for the target), its compute time during the
    run relative to its profile: the mean over its probes (``host_probes``) of the probe
    over what the grid prices the same op at (``grid_ms``). Hosts without a probe are not
    listed."""
    speeds: dict[str, float] = {}
    for host, profile in {"cloud": target, **drafts}.items():
        role = "target" if host == "cloud" else "draft"
        ratios = [
            p["ms"] / grid_ms(profile, p)
            for p in host_probes(probes, host, cpu_plan)
            if p["role"] == role
        ]
        if ratios:
            speeds[host] = sum(ratios) / len(ratios)
    return speeds


def probed_verify_speeds(
    probes: list[dict[str, Any]], target: PairProfile, cpu_plan: dict[str, str] | None = None
) -> dict[int, dict[int, float]]:
    """The target's compute time during the run relative to its profile per batch size
    (rows) and row width (tokens): the mean over its probes (``host_probes``) at that shape
    over the grid's price of the same op; empty where the probes timed one shape (older
    logs), one batch size where they timed one."""
    measured: dict[tuple[int, int], list[float]] = {}
    for probe in host_probes(probes, "cloud", cpu_plan):
        batched = probe.get("batched", {})
        shapes = [(probe["batch"], probe.get("by_tokens", {}))]
        shapes += [(batched["batch"], batched["by_tokens"])] if batched else []
        for batch, by_tokens in shapes:
            for width, ms in by_tokens.items():
                ratio = ms / grid_ms(target, probe, int(width), batch)
                measured.setdefault((batch, int(width)), []).append(ratio)
    speeds: dict[int, dict[int, float]] = {}
    for (batch, width), ratios in sorted(measured.items()):
        speeds.setdefault(batch, {})[width] = sum(ratios) / len(ratios)
    return speeds


def probed_prefill_speed(
    probes: list[dict[str, Any]], target: PairProfile, cpu_plan: dict[str, str] | None = None
) -> float | None:
    """The target's prefill time during the run relative to its profile: the mean over its
    probes (``host_probes``) of the prefill timed over the grid's price of the same prompt
    length; None where no probe timed a prefill (older logs)."""
    ratios = [
        p["prefill_ms"] / target.target_prefill_ms(p["prompt_tokens"])
        for p in host_probes(probes, "cloud", cpu_plan)
        if "prefill_ms" in p
    ]
    return sum(ratios) / len(ratios) if ratios else None


def probed_unequal_rows(
    probes: list[dict[str, Any]], cpu_plan: dict[str, str] | None = None
) -> float | None:
    """What rows of unequal cache lengths added to the target's batches during the run: the
    mean over its probes (``host_probes``) and widths of a batch of such rows over the same
    batch of equal rows; None where no probe timed both (older logs)."""
    ratios = [
        ms / batched["by_tokens"][width]
        for p in host_probes(probes, "cloud", cpu_plan)
        if (batched := p.get("batched"))
        for width, ms in batched.get("unequal_by_tokens", {}).items()
    ]
    return sum(ratios) / len(ratios) if ratios else None


def reference_profile(target: str, draft: str, directory: Path = PROFILES_DIR) -> PairProfile:
    """The committed profile of a pair (measured on the machine it names, not necessarily
    this one), or an error that says how to make one."""
    path = directory / f"{profile_name(target, draft)}.json"
    if not path.is_file():
        raise CalibrationError(
            f"no profile for target {target!r} with draft {draft!r} ({path} is missing); make "
            f"one with: python scripts/profile_models.py --target {target} --draft {draft}"
        )
    return read_profile(path)


def read_profile(path: str | Path) -> PairProfile:
    try:
        return PairProfile(load_profile(path), str(path))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CalibrationError(f"{path}: not a usable profile: {exc}") from exc
