"""Router policies (round-robin, JSQ, power of two choices), the session table that pins a
session to its target, the real router process's loop in front of two real targets, the
simulator's cloud of several targets, and the scenario's and the CPU plan's replicas."""

from __future__ import annotations

import json
import random
import threading
from collections import Counter
from itertools import pairwise

import pytest
import yaml
from cli import run_script
from test_lossless import run_concurrent
from test_sim import simulate, write_scenario

from emulator.net.cleanup import find_leftovers
from emulator.run.orchestrate import EmulationError, cpu_plan
from emulator.scenario import ScenarioError, load_scenario
from emulator.sim.simulation import SimOptions, Simulation
from runtime.events import EventLog, read_events
from runtime.reference import generate_greedy
from runtime.router import CloudRouter
from runtime.routing import (
    JoinShortestQueue,
    PowerOfTwoChoices,
    RoundRobin,
    SessionTable,
    make_router,
)


def test_round_robin_takes_each_target_in_turn_whatever_the_load() -> None:
    router = RoundRobin()
    assert [router.choose([9, 0, 0]) for _ in range(7)] == [0, 1, 2, 0, 1, 2, 0]


def test_jsq_takes_the_fewest_outstanding_and_the_lowest_index_on_a_tie() -> None:
    router = JoinShortestQueue()
    assert router.choose([3, 1, 2]) == 1
    assert router.choose([2, 1, 1]) == 1
    assert router.choose([0, 0]) == 0


def test_p2c_never_takes_the_more_loaded_of_the_two_it_drew() -> None:
    router = PowerOfTwoChoices(seed=3)
    draws = random.Random("p2c-3")
    loads = [5, 0, 9, 2]
    for _ in range(200):
        first, second = draws.sample(range(4), 2)
        expected = second if loads[second] < loads[first] else first
        assert router.choose(loads) == expected


def test_p2c_balances_better_than_chance_and_repeats_for_a_seed() -> None:
    """Sessions that never close: p2c's spread over 8 targets stays far tighter than
    uniform random placement's (which reaches a max-min gap of ~20 at 400 sessions)."""

    def spread(router) -> list[int]:
        table = SessionTable(router, 8)
        for number in range(400):
            table.open(f"s{number}")
        return table.outstanding

    loads = spread(PowerOfTwoChoices(seed=1))
    assert sum(loads) == 400 and max(loads) - min(loads) <= 4
    assert spread(PowerOfTwoChoices(seed=1)) == loads
    rng = random.Random(1)
    chance = Counter(rng.randrange(8) for _ in range(400))
    assert max(chance.values()) - min(chance.values()) > max(loads) - min(loads)


def test_a_session_stays_on_its_target_until_it_closes() -> None:
    table = SessionTable(make_router("jsq"), 2)
    assert table.open("a") == 0 and table.open("b") == 1 and table.open("a") == 0
    assert table.outstanding == [1, 1]
    table.close("a")
    assert table.outstanding == [0, 1] and table.target_of("a") is None
    assert table.open("c") == 0 and table.opened == [2, 1]
    table.close("never-opened")  # nothing to release
    assert table.outstanding == [1, 1]


def test_an_unknown_router_is_refused_with_the_choices() -> None:
    with pytest.raises(ValueError, match="round-robin, jsq, p2c"):
        make_router("random")


@pytest.mark.parametrize("policy", ["round-robin", "jsq", "p2c"])
def test_the_router_spreads_sessions_over_two_real_targets_losslessly(
    tiny_target, tiny_draft, start_server, policy
) -> None:
    """Four edges at once through the router process's loop (real ZeroMQ on loopback):
    each target serves some sessions, every output is the target's own greedy text."""
    targets = [start_server(tiny_target) for _ in range(2)]
    log = EventLog(None, "router", keep=True)
    router = CloudRouter("tcp://127.0.0.1:*", [t.endpoint for t in targets], policy, log, seed=1)
    thread = threading.Thread(target=router.serve, daemon=True)
    thread.start()
    try:
        prompts = [tiny_target.encode_prompt(t) for t in ("first prompt", "another one")]
        expected = [generate_greedy(tiny_target, p, 24) for p in prompts]
        outputs = run_concurrent(router.endpoint, tiny_draft, prompts, 24, [1, 2, 3, 4])
    finally:
        router.stop()
        thread.join(timeout=10)
        router.close()
    for (_, number), ids in outputs.items():
        assert ids == expected[number]
    routes = [e for e in log.events if e["event"] == "route"]
    assert len(routes) == 8 and {r["target"] for r in routes} == {0, 1}
    assert router.table.outstanding == [0, 0]  # every session closed
    assert all(t.counters["messages"] > 0 for t in targets)
    if policy == "round-robin":
        assert Counter(r["target"] for r in routes) == {0: 4, 1: 4}


def routed_scenario(tmp_path, targets: int, router: str, edges: int = 4, **changes):
    scenario, profile = write_scenario(
        tmp_path,
        {"constant": {"delay_ms": 5.0, "rate_mbps": 1000}},
        edges=edges,
        tokens=changes.pop("tokens", 40),
        requests=changes.pop("requests", 2),
        step_ms=10.0,
        prefill_ms=30.0,
        verify=lambda batch, tokens, context: 20.0 + 10.0 * batch + tokens,
        **changes,
    )
    raw = yaml.safe_load(scenario.read_text())
    raw["cloud"].update(targets=targets, router=router, cpu=1.0 / targets)
    scenario.write_text(yaml.safe_dump(raw))
    return scenario, profile


def test_simulated_targets_share_the_edges_by_the_routers_policy(tmp_path) -> None:
    """Four closed-loop edges over two simulated targets (JSQ): the first four sessions
    alternate, no target ever batches more than two rows, and both serve every token."""
    scenario, profile = routed_scenario(tmp_path, 2, "jsq")
    events = simulate(scenario, profile)
    routes = [e for e in events if e["event"] == "route"]
    assert [r["target"] for r in routes[:4]] == [0, 1, 0, 1]
    assert all(max(r["outstanding"]) <= 2 for r in routes)
    assert max(e["batch_size"] for e in events if e["event"] == "batch") <= 2
    requests = [e for e in events if e["event"] == "request"]
    assert len(requests) == 8 and {r["output_tokens"] for r in requests} == {40}


def test_simulated_targets_compute_at_the_same_time(tmp_path) -> None:
    """Two targets are two servers: their batches overlap in time; one target's never do."""

    def overlapping(targets: int) -> int:
        folder = tmp_path / str(targets)
        folder.mkdir()
        scenario, profile = routed_scenario(folder, targets, "jsq")
        batches = sorted(
            (e["t"] * 1000 - e["verify_ms"], e["t"] * 1000)
            for e in simulate(scenario, profile)
            if e["event"] == "batch"
        )
        return sum(later[0] < earlier[1] - 1e-6 for earlier, later in pairwise(batches))

    assert overlapping(1) == 0 and overlapping(2) > 10


def test_replicas_on_one_core_take_turns_at_the_profiled_cost(tmp_path) -> None:
    """Two half-core replicas the emulation pinned to one CPU take turns on it: a
    verification on a quota of its own bursts at the full core while its period lasts,
    beside a computing replica it gets half all along, so it takes longer; the profile's
    time-sharing ratio for two replicas prices their turns, and nothing where they are apart."""
    scenario, profile = routed_scenario(tmp_path, 2, "jsq", edges=8, requests=3)
    edges = {f"e{i}": "0" for i in range(1, 9)}
    shared = {"target1": "1", "target2": "1", "cloud": "1", "router": "0"} | edges
    apart = {"target1": "1", "target2": "2", "cloud": "1", "router": "0"} | edges

    def verify_ms(events: list[dict]) -> list[float]:
        return [e["verify_ms"] for e in events if e["event"] == "batch"]

    runs = {
        name: verify_ms(simulate(scenario, profile, cpu_plan=plan))
        for name, plan in (("shared", shared), ("apart", apart))
    }
    data = json.loads(profile.read_text())
    data["target_time_sharing"] = {"sharers": {"2": {"ratio": 1.5, "resolved": True}}}
    profile.write_text(json.dumps(data))
    runs["priced"] = verify_ms(simulate(scenario, profile, cpu_plan=shared))
    runs["priced apart"] = verify_ms(simulate(scenario, profile, cpu_plan=apart))
    mean = {name: sum(times) / len(times) for name, times in runs.items()}
    assert mean["shared"] > 1.1 * mean["apart"]
    assert mean["priced apart"] == pytest.approx(mean["apart"])  # no turns, no cost
    assert 1.2 * mean["shared"] < mean["priced"] < 1.5 * mean["shared"]


def test_edges_on_a_shared_core_hear_whether_any_replica_computes(tmp_path) -> None:
    """Computing edges pinned to one core beside two replicas on the other CPU compute
    slower while the target side computes: while either replica does, not only while the
    last to change does."""
    scenario, profile = routed_scenario(tmp_path, 2, "jsq", edges=3)
    data = json.loads(profile.read_text())
    slower = {"ratio": 1.5, "resolved": True}
    data["interference"] = {"target": {"verify": slower}, "draft": {"step": slower}}
    profile.write_text(json.dumps(data))
    plan = {"target1": "1", "target2": "1", "cloud": "1", "router": "0"}
    plan |= {f"e{i}": "0" for i in (1, 2, 3)}
    options = SimOptions(profile=str(profile), cpu_plan=plan)
    simulation = Simulation(load_scenario(scenario), EventLog(None, "sim", keep=True), options)
    (core,) = simulation.cores.values()
    first, second = simulation.targets
    first._set_busy(True)
    second._set_busy(True)
    first._set_busy(False)
    assert core.target_busy
    second._set_busy(False)
    assert not core.target_busy


def test_round_robin_in_the_simulator_ignores_the_load(tmp_path) -> None:
    scenario, profile = routed_scenario(tmp_path, 3, "round-robin", edges=2, requests=3)
    routes = [e for e in simulate(scenario, profile) if e["event"] == "route"]
    assert [r["target"] for r in sorted(routes, key=lambda r: r["t"])][:3] == [0, 1, 2]
    assert Counter(r["target"] for r in routes) == {0: 2, 1: 2, 2: 2}


@pytest.mark.parametrize(
    ("cloud", "message"),
    [
        ({"targets": 2, "router": "random"}, "cloud.router: unknown router 'random'"),
        ({"targets": 2, "cpu": 1.5}, "cloud.cpu: each of several targets"),
        ({"targets": 0}, "cloud.targets: must be in"),
    ],
)
def test_bad_cloud_replicas_are_refused_with_the_key(tmp_path, cloud, message) -> None:
    scenario, _ = routed_scenario(tmp_path, 2, "jsq")
    raw = yaml.safe_load(scenario.read_text())
    raw["cloud"].update(cloud)
    scenario.write_text(yaml.safe_dump(raw))
    with pytest.raises(ScenarioError, match=message):
        load_scenario(scenario)


def test_an_edge_may_not_take_a_targets_host_name(tmp_path) -> None:
    scenario, _ = routed_scenario(tmp_path, 2, "jsq")
    raw = yaml.safe_load(scenario.read_text())
    raw["edges"][0]["name"] = "target"
    scenario.write_text(yaml.safe_dump(raw))
    with pytest.raises(ScenarioError, match="edge host target1 would take a cloud host's name"):
        load_scenario(scenario)


def test_the_cpu_plan_packs_targets_onto_the_last_cpus(tmp_path) -> None:
    scenario, _ = routed_scenario(tmp_path, 2, "jsq", edges=3)
    loaded = load_scenario(scenario)
    plan = cpu_plan(loaded, [0, 1])
    assert plan == {"target1": "1", "target2": "1", "cloud": "1", "router": "0"} | {
        f"e{i}": "0" for i in (1, 2, 3)
    }
    loaded.cloud.cpu = 1.0
    assert cpu_plan(loaded, [0, 1, 2, 3])["target2"] == "2"
    assert {cpu_plan(loaded, [0, 1, 2, 3])[f"e{i}"] for i in (1, 2, 3)} == {"0", "1"}
    with pytest.raises(EmulationError, match="2 targets of 1 core each take 2 CPU"):
        cpu_plan(loaded, [0, 1])


@pytest.mark.root
def test_the_emulator_runs_two_targets_behind_the_router(tmp_path) -> None:
    """Mininet: two half-core target hosts behind the router on the cloud host, four real
    (tiny) edges: each target serves sessions, every request completes, both targets' and
    the router's logs are kept, and nothing is left behind."""
    scenario = {
        "name": "replicas",
        "seed": 3,
        "cloud": {"model": "tiny", "cpu": 0.5, "targets": 2, "router": "jsq"},
        "edges": [
            {
                "name": "e",
                "count": 4,
                "draft": "perturbed:0.1",
                "cpu": 0.2,
                "link": {"constant": {"delay_ms": 5, "rate_mbps": 100}},
            }
        ],
        "workload": {"requests_per_edge": 2, "max_new_tokens": 24},
    }
    path = tmp_path / "replicas.yaml"
    path.write_text(yaml.safe_dump(scenario))
    result = run_script(
        "run_topology.py", "--scenario", str(path), "--out", str(tmp_path), "--no-sim", timeout=600
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    (out,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    routes = [e for e in read_events(out / "router.jsonl") if e["event"] == "route"]
    assert len(routes) == 8 and {r["target"] for r in routes} == {0, 1}
    for host in ("target1", "target2"):
        assert any(e["event"] == "batch" for e in read_events(out / f"{host}.jsonl"))
    requests = [e for e in read_events(*out.glob("e[0-9].jsonl")) if e["event"] == "request"]
    assert len(requests) == 8 and not any(r.get("error") for r in requests)
    assert {r["output_tokens"] for r in requests} == {24}
    assert not any(find_leftovers().values())
