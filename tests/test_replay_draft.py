"""Emulated edges (``draft: replay``): the replayed tokens are the real draft's, round by round
through the real server; off the tables the shared real draft answers; no torch, little memory."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import zmq

from runtime.cpuquota import CpuQuota
from runtime.draft import EdgeClient, EdgeSettings
from runtime.draft_service import SharedDraft, serve
from runtime.drafting import DraftState
from runtime.events import EventLog
from runtime.policies import Fixed
from runtime.profile import draft_replay, target_greedy
from runtime.profile_store import PROFILE_VERSION
from runtime.proposal import Proposal
from runtime.replay_draft import (
    DraftServiceClient,
    EdgeClock,
    PromptTable,
    ReplayDraft,
    ReplayTables,
)
from runtime.sampling import SamplingParams

ROOT = Path(__file__).resolve().parents[1]
TOKENS = 30
GAMMA = 8


def table(target_ids: list[int], one_step: list[int], **kwargs) -> PromptTable:
    return PromptTable(
        prompt_ids=[1, 2, 3],
        target_ids=target_ids,
        one_step=one_step,
        after_accept=kwargs.get("after_accept", one_step),
        continue_one_step=kwargs.get("continue_one_step", {}),
        continue_after_accept=kwargs.get("continue_after_accept", {}),
    )


def test_a_proposal_follows_the_target_until_the_draft_misses_then_its_own_way() -> None:
    # the draft agrees with the target at positions 1-3, misses at 4 (says 99, then 98, 97)
    recorded = table(
        [10, 11, 12, 13, 14, 15],
        [-1, 11, 12, 13, 99, 15],
        continue_one_step={4: [98, 97]},
    )
    assert recorded.proposal(1, 2, fed=1) == [11, 12]
    assert recorded.proposal(1, 5, fed=1) == [11, 12, 13, 99, 98]
    assert recorded.proposal(4, 3, fed=1) == [99, 98, 97]
    assert recorded.proposal(4, 4, fed=1) is None  # past the recorded continuation
    assert recorded.proposal(5, 2, fed=1) is None  # past the recorded output
    assert recorded.proposal(2, 2, fed=3) is None  # a first forward of another width


def test_after_a_full_accept_the_first_token_is_the_fed_two_one() -> None:
    recorded = table(
        [10, 11, 12, 13, 14],
        [-1, 11, 12, 13, 14],
        after_accept=[-1, 11, 77, 13, 14],
        continue_after_accept={2: [76]},
    )
    assert recorded.proposal(2, 2, fed=1) == [12, 13]
    assert recorded.proposal(2, 2, fed=2) == [77, 76]
    assert recorded.proposal(3, 2, fed=2) == [13, 14]  # further tokens are fed one


def mini_profile(target, draft, prompts: list[list[int]], step_ms: float = 1.0) -> dict:
    """A profile holding what an emulated edge reads: draft times and replay tables."""
    per_prompt = {}
    for number, prompt in enumerate(prompts):
        outputs = target_greedy(target, prompt, TOKENS)
        per_prompt[f"prompt {number}"] = {
            "replay": {
                "prompt_ids": prompt,
                "target_ids": outputs,
                "one_step": draft_replay(draft, prompt, outputs, GAMMA, 1),
                "after_accept": draft_replay(draft, prompt, outputs, GAMMA, 2),
            }
        }
    steps = [
        {"context": c, "first_ms": step_ms, "first_after_accept_ms": step_ms, "ms": step_ms}
        for c in (16, 256)
    ]
    return {
        "version": PROFILE_VERSION,
        "draft_step_ms": steps,
        "draft_prefill_ms": [{"prompt_tokens": n, "ms": step_ms} for n in (8, 256)],
        "acceptance": {"per_prompt": per_prompt},
        "replay": {"gamma": GAMMA, "eos_ids": sorted(draft.eos_ids)},
    }


class Recording:
    """A drafter that notes every proposal of the one it wraps."""

    def __init__(self, inner, proposals: list[list[int]]) -> None:
        self.inner, self.proposals = inner, proposals

    def prefill(self, prompt):
        return self.inner.prefill(prompt)

    def propose(self, committed, gamma) -> Proposal:
        proposal = self.inner.propose(committed, gamma)
        self.proposals.append(list(proposal.tokens))
        return proposal

    def accept(self, accepted) -> None:
        self.inner.accept(accepted)

    def close(self) -> None:
        self.inner.close()


@pytest.fixture
def prompts(tiny_target) -> list[list[int]]:
    return [[5, 17, 42, 9, 33], [7, 7, 100, 3]]


@pytest.mark.parametrize("gamma", [1, 3, 6])
def test_replayed_proposals_are_the_real_drafts_round_by_round(
    tiny_target, tiny_draft, start_server, prompts, gamma
) -> None:
    """Through the real server, a replaying edge sends exactly what the real draft sends
    (the tiny pair is float: a forward's width changes no token, so the tables are exact)."""
    tables = ReplayTables(mini_profile(tiny_target, tiny_draft, prompts), "mini")
    clock = EdgeClock(CpuQuota(1.0), speed=1.0)
    server = start_server(tiny_target)
    real: list[list[int]] = []
    replayed: list[list[int]] = []
    params = SamplingParams(ignore_eos=True)

    def real_drafter(prompt, session):
        return Recording(DraftState(tiny_draft, params, 1), real)

    def replay_drafter(prompt, session):
        inner = ReplayDraft(tables.by_prompt(prompt), tables.timing, clock, None, session)
        return Recording(inner, replayed)

    outputs = {}
    for name, drafters in (("real", real_drafter), ("replay", replay_drafter)):
        log = EventLog(None, name, keep=True)
        settings = EdgeSettings(name, Fixed(gamma), params, log)
        client = EdgeClient(server.endpoint, None, settings, drafters=drafters)
        outputs[name] = [client.request(p, TOKENS).output_ids for p in prompts]
        client.close()
        sources = {e.get("proposal_source") for e in log.events if e["event"] == "round"}
        assert sources == ({None} if name == "real" else {"table"})
    assert replayed == real
    assert outputs["replay"] == outputs["real"]


def test_off_the_tables_the_shared_real_draft_answers(
    tiny_target, tiny_draft, start_server, prompts
) -> None:
    """A table whose recorded output differs from what the target commits (as a batch-shape
    flip makes it) sends the rest of the request to the shared draft, which proposes what
    a real draft would, and the rounds say so."""
    profile = mini_profile(tiny_target, tiny_draft, prompts[:1])
    entry = profile["acceptance"]["per_prompt"]["prompt 0"]["replay"]
    true, drafted = entry["target_ids"][10], entry["one_step"]["draft_ids"][10]
    # the record flips here, to a token the draft did not predict either
    entry["target_ids"][10] = next(t for t in range(3) if t not in (true, drafted))
    tables = ReplayTables(profile, "mini")
    context = zmq.Context.instance()
    router = context.socket(zmq.ROUTER)
    router.bind("inproc://shared-draft")
    threading.Thread(
        target=serve, args=(router, SharedDraft(tiny_draft), EventLog(None, "s")), daemon=True
    ).start()
    service = DraftServiceClient("inproc://shared-draft", context)
    clock = EdgeClock(CpuQuota(1.0), speed=1.0)
    server = start_server(tiny_target)
    params = SamplingParams(ignore_eos=True)
    real: list[list[int]] = []
    replayed: list[list[int]] = []
    log = EventLog(None, "replay", keep=True)
    runs = (
        (lambda p, s: Recording(DraftState(tiny_draft, params, 1), real), EventLog(None, "r")),
        (
            lambda p, s: Recording(
                ReplayDraft(tables.by_prompt(p), tables.timing, clock, service, s), replayed
            ),
            log,
        ),
    )
    for drafters, events in runs:
        settings = EdgeSettings("e", Fixed(4), params, events)
        client = EdgeClient(server.endpoint, None, settings, drafters=drafters)
        client.request(prompts[0], TOKENS)
        client.close()
    rounds = [e for e in log.events if e["event"] == "round"]
    assert rounds[0]["proposal_source"] == "table"
    # rounds drafting from output position 11 on: the committed text has left the record
    starts = [(r["context_len"] - r["emitted"] - len(prompts[0]), r) for r in rounds]
    past_the_flip = [r["proposal_source"] for start, r in starts if start >= 11]
    assert past_the_flip and set(past_the_flip) == {"fallback"}
    assert replayed == real
    service.close()


def test_an_edge_clock_spends_the_work_on_its_quota() -> None:
    """50 ms of work on a 0.3 quota from the start of a period: 30 ms run, 70 ms throttled,
    20 ms more: done at 120 ms."""
    clock = EdgeClock(CpuQuota(0.3, phase_ms=0.0), speed=1.0)
    started = clock.origin
    assert clock.spend(50.0, started) == pytest.approx(50.0)
    assert 0.118 <= time.time() - started < 0.5


def test_an_emulated_edge_imports_no_torch_and_stays_small(
    tiny_target, tiny_draft, prompts, tmp_path
) -> None:
    """The edge process's side of ``--draft replay``: its tables and clock set up, torch not
    imported, resident memory well under the 100 MB an emulated edge may use."""
    profile = tmp_path / "profile.json"
    profile.write_text(json.dumps(mini_profile(tiny_target, tiny_draft, prompts)))
    script = (
        "import sys\n"
        "from runtime.draft import build_parser, replay_side\n"
        "from runtime.sampling import SamplingParams\n"
        f"args = build_parser().parse_args(['--draft', 'replay', '--replay-profile', "
        f"{str(profile)!r}])\n"
        "side = replay_side(args, SamplingParams(), ['prompt 0', 'prompt 1'])\n"
        "assert side.encode('prompt 1') == [7, 7, 100, 3]\n"
        "from runtime.process import peak_rss_kb\n"
        "print('torch' in sys.modules, peak_rss_kb())\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=True
    )
    torch_loaded, peak_kb = done.stdout.split()
    assert torch_loaded == "False"
    assert int(peak_kb) / 1024 < 100


def test_an_emulated_edge_refuses_what_it_cannot_replay(tmp_path) -> None:
    profile = tmp_path / "old.json"
    profile.write_text(json.dumps({"version": 7}))
    command = [sys.executable, "-m", "runtime.draft", "--draft", "replay", "--prompt", "hi"]
    for extra, message in (
        ([], "needs --replay-profile"),
        (["--replay-profile", str(profile)], "holds no replay tables"),
        (["--mode", "edge-only", "--replay-profile", str(profile)], "edge-only"),
        (["--temperature", "0.7", "--replay-profile", str(profile)], "greedy"),
    ):
        done = subprocess.run([*command, *extra], cwd=ROOT, capture_output=True, text=True)
        assert done.returncode == 2
        assert message in done.stderr and "Traceback" not in done.stderr


def test_a_scenario_names_emulated_edges_and_refuses_what_they_cannot_be(tmp_path) -> None:
    from emulator.scenario import Overrides, ScenarioError, load_scenario

    def scenario(**group) -> Path:
        path = tmp_path / "s.yaml"
        edge = {"name": "e", "link": {"constant": {"rate_mbps": 10}}, **group}
        path.write_text(json.dumps({"edges": [edge]}))
        return path

    group = load_scenario(scenario(draft="replay:int8", speed=2.0)).edges[0]
    assert (group.draft, group.replay, group.speed, group.draft_spec) == (
        "int8",
        True,
        2.0,
        "replay:int8",
    )
    replayed = load_scenario(scenario(draft="bf16"), Overrides(draft="replay")).edges[0]
    assert replayed.replay and replayed.draft == "bf16"
    assert not load_scenario(scenario()).edges[0].replay
    for group, message in (
        ({"draft": "replay", "mode": "edge-only"}, "edge-only"),
        ({"speed": 2.0}, "only emulated edges"),
    ):
        with pytest.raises(ScenarioError, match=message):
            load_scenario(scenario(**group))


def test_the_check_compares_medians_and_says_what_is_within_five_percent() -> None:
    from emulator.experiments.replay_check import RunMeasures, compare_runs

    def run(draft: str, draft_ms: float, tpot: float) -> RunMeasures:
        return RunMeasures(1, draft, draft_ms, 0.5, tpot, 0, "x")

    runs = [
        run("real", 100, 300),
        run("real", 110, 320),
        run("replay", 104, 400),
        run("replay", 106, 380),
        run("replay", 200, 390),
    ]
    row = compare_runs(runs)["1"]
    assert row["draft_ms"]["real"] == 105 and row["draft_ms"]["replay"] == 106
    assert row["draft_ms"]["within"] and row["acceptance"]["error"] == 0
    assert row["tpot_ms"]["error"] == pytest.approx(390 / 310 - 1)
    assert not row["tpot_ms"]["within"]


def test_emulated_edges_stand_in_at_the_speed_the_real_drafters_probed(tmp_path) -> None:
    from emulator.experiments.replay_check import probed_draft_speed, scenario_for

    (tmp_path / "run.json").write_text(
        json.dumps({"sim_speeds": {"cloud": 0.9, "a1": 1.1, "b1": 1.3}})
    )
    assert probed_draft_speed(tmp_path) == pytest.approx(1.2)
    base = ROOT / "topologies" / "default.yaml"
    import yaml

    raw = yaml.safe_load(scenario_for(base, tmp_path, 2, True, 1.2).read_text())
    assert [g["draft"] for g in raw["edges"]] == ["replay:int8", "replay:int8"]
    assert {g["speed"] for g in raw["edges"]} == {1.2}
    assert all(Path(g["link"]["trace"]).is_absolute() for g in raw["edges"])


def test_the_check_runs_under_the_experiments_rule(tmp_path) -> None:
    """A failed real run is recorded and the check goes on; the emulated run it would have
    set the speed of fails saying why; the finished pair is compared; exit 1. The main job
    is stood in for by a function writing what a finished run leaves (a run.json with its
    probes' speeds, an edge's log): the check's bookkeeping is what is tested here."""
    from records import round_record

    from emulator.experiments.replay_check import replay_cases, run_check
    from emulator.run.child_runs import MainJobFailed, MainJobRun
    from runtime.events import EventLog

    speeds_seen = []

    def main_job(scenario: Path, out: Path) -> MainJobRun:
        import yaml

        raw = yaml.safe_load(scenario.read_text())
        if sum(group.get("count", 1) for group in raw["edges"]) == 3:
            raise MainJobFailed("the target did not start")
        speeds_seen.append(raw["edges"][0].get("speed"))
        results = out / scenario.stem
        results.mkdir(parents=True)
        (results / "run.json").write_text(json.dumps({"sim_speeds": {"cloud": 1.0, "e1": 1.25}}))
        log = EventLog(results / "e1.jsonl", "e1")
        log.write("round", **round_record(draft_ms=300.0).event())
        log.close()
        return MainJobRun(results)

    said: list[str] = []
    finished = run_check(
        ROOT / "topologies" / "default.yaml",
        tmp_path,
        replay_cases([1, 3], 1),
        main_job,
        said.append,
    )
    assert finished.exit_code() == 1
    assert set(finished.failed) == {"3-0-real", "3-0-replay"}
    assert "no probed speed" in finished.records["3-0-replay"]["error"]
    assert speeds_seen == [None, 1.25]  # the emulated run at what the real one probed
    assert finished.records["1-0-replay"]["speed"] == 1.25
    kept = json.loads((tmp_path / "partial.json").read_text())
    assert set(kept["runs"]) == {"1-0-real", "1-0-replay", "3-0-real", "3-0-replay"}
    assert kept["comparison"]["1"]["draft_ms"]["error"] == 0 and "3" not in kept["comparison"]
    assert any("1 edge(s), replay drafters (repeat 1): draft 300 ms" in line for line in said)
