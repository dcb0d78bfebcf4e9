"""The server's window advice: its acceptance and cost estimates against their definitions,
its choice on scripted servers, the advised AWC, and the advice through the real server and
the simulator."""

from __future__ import annotations

import itertools
import random
import threading
from collections import defaultdict

import pytest

from emulator.scenario import Overrides, load_scenario
from emulator.sim.simulation import Simulation
from runtime.draft import EdgeClient, EdgeSettings
from runtime.events import EventLog
from runtime.observations import RoundObservation
from runtime.policies import AWC, BatchingPolicy, make_window_policy
from runtime.window_advice import PositionAcceptance, WindowAdvisor


def test_position_acceptance_counts_each_rows_run() -> None:
    acceptance = PositionAcceptance(decay=0.0)
    acceptance.add([(4, 4), (4, 1), (4, 0)])
    assert acceptance.reached == [3.0, 2.0, 1.0, 1.0]
    assert acceptance.rejected == [1.0, 1.0, 0.0, 0.0]
    # position 1 leans on α = 0.5 with 2 pseudo-rows, position 2 on position 1
    first = (1 + 2 * 0.5) / (3 + 2)
    second = (1 + 2 * first) / (2 + 2)
    assert acceptance.expected_tokens(2) == pytest.approx(1 + (1 - first) * (2 - second))


def test_bursty_acceptance_is_estimated_per_position_not_as_one_alpha() -> None:
    """Runs that are either short or long (acceptance in bursts): the estimate of what a
    window emits equals the runs' own mean, where one per-token α read off long rows would
    promise too much from short windows and too little from long ones."""
    rng = random.Random(3)
    runs = [rng.choice([0, 0, 1, 8, 8]) for _ in range(4000)]
    acceptance = PositionAcceptance(decay=0.0, prior_rows=1e-9)
    acceptance.add([(8, run) for run in runs])
    for gamma in (1, 3, 8):
        truth = 1 + sum(min(run, gamma) for run in runs) / len(runs)
        assert acceptance.expected_tokens(gamma) == pytest.approx(truth, rel=1e-6)
    alpha = sum(runs) / (sum(runs) + sum(run < 8 for run in runs))
    geometric_one = 1 + alpha
    assert geometric_one > acceptance.expected_tokens(1) + 0.1


def test_the_deepest_known_position_only_grows() -> None:
    acceptance = PositionAcceptance(decay=0.5, known_rows=2.0)
    acceptance.add([(5, 5)] * 4)
    assert acceptance.deepest == 5
    for _ in range(10):  # windows of one: the deep positions' counts decay away
        acceptance.add([(1, 0)] * 4)
    assert acceptance.reached[4] < 0.01 and acceptance.deepest == 5


def feed(
    advisor: WindowAdvisor,
    edges: int,
    network_ms: float,
    draft_step_ms: float,
    verify: dict[tuple[int, int], float],
    sessions: int,
    rounds: int = 30,
) -> None:
    """A scripted server: every edge asks for advice, drafting 3 tokens; each round one
    batch per shape in ``verify`` (rows, width -> ms). The rows' acceptance is given to the
    advisor apart (rows drafting 0 here carry none)."""
    now = 0.0
    for _ in range(rounds):
        now += network_ms + 3 * draft_step_ms
        for edge in range(edges):
            advisor.request(edge, now, 3, 3 * draft_step_ms)
        for (rows, width), ms in verify.items():
            advisor.batch([width] * rows, [0] * rows, [0] * rows, ms, [0.0] * rows, sessions)
        now += max(verify.values())
        for edge in range(edges):
            advisor.verdict(edge, now, done=False)


def assert_best_by_definition(
    advisor: WindowAdvisor,
    sessions: int,
    edges: int,
    network_ms: float,
    draft_step_ms: float,
    verify,
) -> None:
    """The advice is the common γ with the most tokens per ms (or within the hysteresis of
    it): the edges' own rates summed, capped by a full batch of rows at the server's
    measured cost (every batch full, no queue in these scripts)."""
    rows = min(sessions, advisor.max_batch)
    rates = {}
    for gamma in range(1, min(advisor.high, advisor.acceptance.deepest + 1) + 1):
        tokens = advisor.acceptance.expected_tokens(gamma)
        own = edges * tokens / (gamma * draft_step_ms + network_ms + verify(rows, gamma + 1))
        capacity = rows * tokens / verify(rows, gamma + 1)
        rates[gamma] = min(own, capacity * min(1.0, edges / sessions))
    assert rates[advisor.gamma] * (1 + advisor.hysteresis) >= max(rates.values())


def test_a_saturated_server_advises_the_width_its_own_cost_favours() -> None:
    """32 sessions, batches of 8, a cost that rises steeply past width 4 (measured per
    shape, not the AWC model's straight line): the advice is that knee, not a wider one."""
    runs = [(8, 8), (8, 6), (8, 2), (8, 0)]
    verify = {(8, w): 100.0 + 10.0 * w + (200.0 if w > 4 else 0.0) for w in range(1, 10)}
    advisor = WindowAdvisor(max_batch=8, high=8)
    advisor.acceptance.add(runs * 4)
    feed(advisor, 32, network_ms=5.0, draft_step_ms=1.0, verify=verify, sessions=32)
    assert_best_by_definition(advisor, 32, 32, 5.0, 1.0, lambda r, w: verify[(8, w)])
    assert advisor.gamma == 3


def test_a_lone_edge_on_a_slow_link_is_advised_a_long_window() -> None:
    """One edge, 400 ms of network, cheap drafting: its own round binds, and a long window
    spreads the network over more tokens; on a fast link and with dear drafting, a short one."""
    runs = [(8, 8), (8, 7), (8, 5), (8, 1)]
    verify = {(1, w): 20.0 + w for w in range(1, 10)}

    def advice(network_ms: float, draft_step_ms: float) -> int:
        advisor = WindowAdvisor(max_batch=8, high=8)
        advisor.acceptance.add(runs * 4)
        feed(advisor, 1, network_ms, draft_step_ms, verify, sessions=1)
        assert_best_by_definition(
            advisor, 1, 1, network_ms, draft_step_ms, lambda r, w: verify[(1, w)]
        )
        return advisor.gamma

    assert advice(400.0, 2.0) >= 6
    assert advice(1.0, 60.0) <= 2


def test_unmeasured_widths_scale_from_the_nearest_measured_one() -> None:
    advisor = WindowAdvisor(max_batch=8, overhead_tokens=4.0)
    advisor.batch([3] * 2, [2] * 2, [1] * 2, 70.0, [], 2)
    assert advisor.verify_ms(2, 3) == pytest.approx(70.0)
    assert advisor.verify_ms(2, 6) == pytest.approx(70.0 * 10 / 7)
    assert advisor.verify_ms(5, 3) == pytest.approx(70.0)  # the nearest measured batch size


def observation(hint: int) -> RoundObservation:
    return RoundObservation(4, 4, 2, 80.0, 30.0, 0.0, 1, 20.0, 64, 5, 0, 2, 1, 0.5, hint)


def test_advised_awc_drafts_the_hint_and_its_own_choice_without_one() -> None:
    advised, alone = make_window_policy("awc:server"), AWC()
    assert advised.asks_server and not alone.asks_server and advised.name == "awc-server"
    for policy in (advised, alone):
        for _ in range(10):
            policy.observe(observation(0))
    assert advised.next_gamma(64) == alone.next_gamma(64)  # no advice yet: AWC's own
    advised.observe(observation(7))
    assert advised.next_gamma(64) == 7
    advised.observe(observation(40))
    assert advised.next_gamma(64) == advised.high  # within its bounds
    with pytest.raises(ValueError, match="server"):
        make_window_policy("awc:nonsense")


def rounds_following_advice(rounds: list[dict], max_tokens: int) -> int:
    """Checks that each round after an advised one drafts the advice (or the token budget's
    rest); returns how many did."""
    followed, output = 0, 1  # the first token comes from the prefill
    for before, after in itertools.pairwise(rounds):
        output += before["emitted"]
        if before.get("gamma_hint"):
            assert after["gamma"] == max(0, min(before["gamma_hint"], max_tokens - output - 1))
            followed += 1
    return followed


def test_the_real_server_advises_only_the_edges_that_ask(
    tiny_target, tiny_draft, start_server
) -> None:
    server = start_server(tiny_target, batching=BatchingPolicy(max_batch=8, max_wait_ms=20.0))
    logs = {name: EventLog(None, name, keep=True) for name in ("asks", "alone")}

    def edge(name: str) -> None:
        policy = make_window_policy("awc:server" if name == "asks" else "awc")
        client = EdgeClient(server.endpoint, tiny_draft, EdgeSettings(name, policy, log=logs[name]))
        try:
            client.request(tiny_target.encode_prompt(f"advice for {name}"), 40)
        finally:
            client.close()

    threads = [threading.Thread(target=edge, args=(name,)) for name in logs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    asked = [e for e in logs["asks"].events if e["event"] == "round"]
    assert not any("gamma_hint" in e for e in logs["alone"].events)
    hints = [e.get("gamma_hint", 0) for e in asked]
    assert all(h > 0 for h in hints[1:]), hints  # from its second round on
    assert rounds_following_advice(asked, 40) >= len(asked) - 2


def test_simulated_edges_draft_their_servers_advice(tmp_path) -> None:
    path = tmp_path / "advised.yaml"
    path.write_text(
        "name: advised\nseed: 2\n"
        "cloud: {model: smollm2, cpu: 1.0, batching: {max_batch: 4}}\n"
        "edges:\n  - {name: e, count: 8, draft: int8, cpu: 0.7,\n"
        "     link: {constant: {rate_mbps: 50, delay_ms: 20}}}\n"
        "wan: {constant: {rate_mbps: 1000, delay_ms: 2}}\n"
        "workload: {requests_per_edge: 2, max_new_tokens: 48}\n"
    )
    log = EventLog(None, "sim", keep=True)
    Simulation(load_scenario(path, Overrides(policy="awc:server")), log).run()
    by_session = defaultdict(list)
    for e in log.events:
        if e["event"] == "round":
            by_session[e["session"]].append(e)
    followed = 0
    for rounds in by_session.values():
        assert sum(r["emitted"] for r in rounds) == 47  # the first token comes from the prefill
        followed += rounds_following_advice(rounds, 48)
    assert followed > 50
