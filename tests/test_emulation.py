"""The emulated network for real: Mininet hosts, shaped links, replayed traces, cleanup."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from emulator.chaos.time_limit import time_limit
from emulator.net.cleanup import cleanup, find_leftovers
from emulator.net.replay import TraceReplayer
from emulator.net.topology import CLOUD, EmulatedNetwork
from emulator.scenario import (
    CloudSpec,
    EdgeGroup,
    LinkSpec,
    Scenario,
    ScenarioError,
    Workload,
    load_scenario,
)
from emulator.traces.linktrace import LinkTrace
from runtime.events import EventLog

ROOT = Path(__file__).resolve().parents[1]


def one_edge(trace: LinkTrace) -> Scenario:
    group = EdgeGroup("edge", 1, "int8", 1.0, 1, "fixed:4", LinkSpec(trace, "test", 100))
    return Scenario("t", ROOT, 0, None, CloudSpec(), [group], None, Workload(), {})


def constant(rate_mbps: float | None, delay_ms: float) -> LinkTrace:
    series = {
        "rate_mbps": np.array([np.nan if rate_mbps is None else rate_mbps]),
        "delay_ms": np.array([delay_ms]),
        "jitter_ms": np.zeros(1),
        "loss_pct": np.zeros(1),
    }
    return LinkTrace(np.zeros(1), 60.0, series, {k: v.copy() for k, v in series.items()})


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("  colour: blue\n", "cloud.colour: unknown key"),
        ("", "edges[0].link.trace: "),
        ("", "edges[0].link.constant.rate_mbps: must be in"),
        ("", "edges[0].cpu: must be in [0.01, 1.0]"),
    ],
)
def test_bad_scenarios_are_refused_before_any_namespace(tmp_path, change, message) -> None:
    text = (ROOT / "topologies" / "default.yaml").read_text()
    text = text.replace("../traces/", str(ROOT / "traces") + "/")
    if "unknown key" in message:
        text = text.replace("  threads: 1\n", "  threads: 1\n" + change, 1)
    elif message.endswith("trace: "):
        text = text.replace("lte-like.csv", "absent.csv")
    elif "rate_mbps" in message:
        text = text.replace(
            "{trace: " + str(ROOT / "traces") + "/lte-like.csv, queue_packets: 100}",
            "{constant: {rate_mbps: -5, delay_ms: 10}}",
        )
    else:
        text = text.replace("cpu: 0.3", "cpu: 1.5", 1)
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    before = find_leftovers()
    with pytest.raises(ScenarioError) as info:
        load_scenario(path)
    assert str(path) in str(info.value) and message in str(info.value)
    assert find_leftovers() == before


def test_default_scenario_loads() -> None:
    scenario = load_scenario(ROOT / "topologies" / "default.yaml")
    assert [host for host, _ in scenario.edge_hosts()] == ["lte1", "wifi1", "nr1"]
    assert scenario.wan is not None and scenario.workload.requests_per_edge == 2


ZMQ_ECHO = textwrap.dedent("""
    import sys, zmq
    socket = zmq.Context().socket(zmq.REP)
    socket.bind("tcp://0.0.0.0:5700")
    print("ready", flush=True)
    while True:
        message = socket.recv()
        socket.send(b"ok")
""")
ZMQ_CLIENT = textwrap.dedent("""
    import sys, time, zmq
    socket = zmq.Context().socket(zmq.REQ)
    socket.connect(f"tcp://{sys.argv[1]}:5700")
    socket.send(b"warm-up"); socket.recv()
    for size in (16, 500_000):
        times = []
        for _ in range(3):
            start = time.perf_counter()
            socket.send(b"x" * size); socket.recv()
            times.append((time.perf_counter() - start) * 1000)
        print(size, min(times))
""")


@pytest.mark.root
def test_zeromq_round_trip_sees_delay_and_serialisation(tmp_path) -> None:
    client = tmp_path / "client.py"
    client.write_text(ZMQ_CLIENT)
    with EmulatedNetwork(one_edge(constant(10.0, 20.0)), "delayline") as net:
        replay = TraceReplayer(net.links, EventLog(None, "test"), loop=False)
        replay.start()
        server = net.host(CLOUD).popen(
            [sys.executable, "-c", ZMQ_ECHO], stdout=subprocess.PIPE, text=True
        )
        try:
            assert server.stdout.readline().strip() == "ready"
            out = net.host("edge1").cmd(f"{sys.executable} {client} {net.ip(CLOUD)}")
        finally:
            replay.stop()
            server.terminate()
            server.wait()
    times = dict(re.findall(r"^(\d+) ([\d.]+)", out, flags=re.M))
    assert 40.0 <= float(times["16"]) < 42.0, out
    # 500 kB up at 10 Mbit/s, framed in 1514-byte frames of 1448 bytes of payload.
    serialisation = 500_000 * 8 / 10e6 * 1000 * 1514 / 1448
    assert float(times["500000"]) == pytest.approx(40.0 + serialisation, rel=0.05), out


@pytest.mark.root
def test_replayed_trace_changes_are_observed_on_time() -> None:
    times = np.array([0.0, 1.5])
    series = {
        "rate_mbps": np.full(2, np.nan),
        "delay_ms": np.array([10.0, 50.0]),
        "jitter_ms": np.zeros(2),
        "loss_pct": np.zeros(2),
    }
    trace = LinkTrace(times, 3.0, series, {k: v.copy() for k, v in series.items()})
    log = EventLog(None, "test", keep=True)
    with EmulatedNetwork(one_edge(trace), "delayline") as net:
        replay = TraceReplayer(net.links, log, loop=False)
        replay.start()
        start = time.time()
        out = net.host("edge1").cmd(f"ping -D -n -i 0.02 -c 120 {net.ip(CLOUD)}")
        replay.stop()
    changes = [e for e in log.events if e["event"] == "link" and e["piece"] == 1]
    assert len(changes) == 2 and all(e["lateness_ms"] < 5 for e in changes)
    samples = [
        (float(t) - float(rtt) / 1000 - start, float(rtt))
        for t, rtt in re.findall(r"^\[([\d.]+)\].*time=([\d.]+) ms", out, flags=re.M)
    ]
    before = [rtt for t, rtt in samples if 0.1 < t < 1.45]
    after = [rtt for t, rtt in samples if t > 1.55]
    assert before and after
    assert np.median(before) == pytest.approx(20.0, abs=1.0)
    assert np.median(after) == pytest.approx(100.0, abs=1.0)


@pytest.mark.root
def test_default_topology_connects_every_edge() -> None:
    scenario = load_scenario(ROOT / "topologies" / "default.yaml")
    with (
        EmulatedNetwork(scenario, "delayline") as net,
        TraceReplayer(net.links, EventLog(None, "test")),
    ):
        for host, _ in scenario.edge_hosts():
            out = net.host(host).cmd(f"ping -c 2 -i 0.2 -W 2 {net.ip(CLOUD)}")
            assert " 0% packet loss" in out, (host, out)
        assert all(
            s["net.ipv4.tcp_slow_start_after_idle"] == "0" for s in net.host_settings.values()
        )


@pytest.mark.root
def test_cleanup_after_a_killed_run_leaves_nothing_and_marks_it_killed(tmp_path) -> None:
    cleanup()
    results = tmp_path / "run"
    results.mkdir()
    (results / "run.json").write_text(json.dumps({"status": "running"}))
    holder = tmp_path / "hold.py"
    holder.write_text(
        textwrap.dedent(f"""
        import time
        from mininet.log import setLogLevel
        setLogLevel("error")
        from emulator.scenario import load_scenario
        from emulator.net.topology import EmulatedNetwork
        from pathlib import Path
        EmulatedNetwork(load_scenario("{ROOT / "topologies" / "default.yaml"}"),
                        "delayline", results=Path("{results}")).start()
        print("up", flush=True)
        time.sleep(120)
    """)
    )
    process = subprocess.Popen(
        [sys.executable, str(holder)], stdout=subprocess.PIPE, text=True, cwd=ROOT
    )
    assert process.stdout.readline().strip() == "up"
    assert any(find_leftovers().values())
    process.send_signal(signal.SIGKILL)
    process.wait()
    # someone else's files in the temp folder are not ours to remove (Mininet's cleanup would)
    theirs = Path(tempfile.gettempdir()) / f"not-dsd-emu-{os.getpid()}.log"
    theirs.write_text("keep me")
    try:
        cleanup()
        assert theirs.read_text() == "keep me"
    finally:
        theirs.unlink(missing_ok=True)
    assert not any(find_leftovers().values()), find_leftovers()
    assert json.loads((results / "run.json").read_text())["status"] == "killed"


@pytest.mark.root
def test_a_network_whose_shells_were_killed_is_still_torn_down() -> None:
    """Mininet sends every teardown command to a node's shell and waits forever for the
    reply of a dead one; a network whose shells were killed from outside is removed by
    name instead, leaving nothing."""
    net = EmulatedNetwork(one_edge(constant(10.0, 20.0)), "delayline").start()
    assert net.net is not None
    for node in net.net.values():
        node.shell.kill()
        node.shell.wait()
    with time_limit(60, "the teardown"):
        net.stop()
    assert not any(find_leftovers().values()), find_leftovers()


def test_packet_exact_links_need_delivery_opportunities(tmp_path) -> None:
    (tmp_path / "link.down").write_text("\n".join(str(t) for t in range(1, 1001)) + "\n")
    (tmp_path / "link.up").write_text("\n".join(str(t) for t in range(2, 1001, 2)) + "\n")
    base = (
        (ROOT / "topologies" / "default.yaml")
        .read_text()
        .replace("../traces/", str(ROOT / "traces") + "/")
    )
    good = base.replace(
        "{trace: " + str(ROOT / "traces") + "/lte-like.csv, queue_packets: 100}",
        f"{{trace: 'mahimahi:{tmp_path / 'link.down'}', packet_exact: true}}",
    )
    (tmp_path / "good.yaml").write_text(good)
    link = load_scenario(tmp_path / "good.yaml").edges[0].link
    assert link.packet_exact and set(link.trace.deliveries_ms) == {"up", "down"}
    bad = base.replace("queue_packets: 100}", "packet_exact: true}", 1)
    (tmp_path / "bad.yaml").write_text(bad)
    with pytest.raises(ScenarioError, match="packet_exact: needs a mahimahi trace"):
        load_scenario(tmp_path / "bad.yaml")
