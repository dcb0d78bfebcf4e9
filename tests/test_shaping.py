"""Shaping backends, for real: a delay line between network namespaces; netem where it exists."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import time

import numpy as np
import pytest
from netns import CLOUD_IP, delay_line_between, namespaces, sh

from emulator.net.shaping.base import ShapeParams
from emulator.net.shaping.control import ShaperError
from emulator.net.shaping.netem import tc_commands
from emulator.net.shaping.probe import choose_backend, netem_available


def ping(
    namespace: str, count: int, interval: float = 0.05, statistic: str = "avg"
) -> tuple[float, float]:
    """(RTT ms, loss %) from the edge to the cloud; ``statistic``: min or avg of the pings."""
    out = subprocess.run(
        shlex.split(f"ip netns exec {namespace} ping -q -c {count} -i {interval} -W 1 {CLOUD_IP}"),
        capture_output=True,
        text=True,
    )
    loss = float(re.search(r"([\d.]+)% packet loss", out.stdout).group(1))
    match = re.search(r"= ([\d.]+)/([\d.]+)/", out.stdout)
    if not match:
        return float("nan"), loss
    return float(match.group(1 if statistic == "min" else 2)), loss


@pytest.fixture
def delay_line():
    with delay_line_between(str(os.getpid())) as made:
        yield made


@pytest.mark.root
def test_delay_line_adds_the_set_delay(delay_line) -> None:
    shaper, edge, _ = delay_line
    base, _ = ping(edge, 10, statistic="min")
    shaper.set("up", ShapeParams(delay_ms=10.0))
    shaper.set("down", ShapeParams(delay_ms=30.0))
    # the minimum: a busy machine can only add to an RTT, and the set delay is its floor
    rtt, loss = ping(edge, 20, statistic="min")
    assert loss == 0
    assert abs(rtt - 40.0 - base) < 1.0, (rtt, base)


@pytest.mark.root
def test_live_change_settles_fast_and_outage_holds_traffic(delay_line) -> None:
    shaper, edge, _ = delay_line
    shaper.set("up", ShapeParams(delay_ms=5.0))
    rtt, _ = ping(edge, 5)
    assert 4.5 < rtt < 7
    start = time.monotonic()
    shaper.set("down", ShapeParams(delay_ms=50.0))
    assert time.monotonic() - start < 0.02
    rtt, _ = ping(edge, 5)
    assert 54 < rtt < 57
    shaper.set("up", ShapeParams(rate_mbps=0.0))
    _, loss = ping(edge, 5, interval=0.2)
    assert loss == 100.0
    shaper.set("up", ShapeParams(rate_mbps=10.0, delay_ms=5.0))
    _, loss = ping(edge, 5)
    assert loss == 0


@pytest.mark.root
def test_loss_rate_matches_setting(delay_line) -> None:
    shaper, edge, _ = delay_line
    shaper.set("up", ShapeParams(loss_pct=20.0))
    _, loss = ping(edge, 400, interval=0.005)
    assert 14.0 < loss < 26.0  # 400 trials: 3 standard deviations of a 20% binomial
    stats = shaper.stats()
    assert stats["up"]["lost"] > 0 and stats["down"].get("lost", 0) == 0


@pytest.mark.root
def test_rate_limit_serialises_frames(delay_line) -> None:
    shaper, edge, cloud = delay_line
    shaper.set("up", ShapeParams(rate_mbps=20.0))
    server = subprocess.Popen(
        ["ip", "netns", "exec", cloud, "iperf3", "-s", "-1"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        time.sleep(0.5)
        out = sh(f"ip netns exec {edge} iperf3 -c {CLOUD_IP} -t 4 -J")
    finally:
        server.wait(timeout=20)

    goodput = json.loads(out)["end"]["sum_received"]["bits_per_second"] / 1e6
    assert 20.0 * 1448 / 1514 * 0.9 < goodput < 20.0 * 1.02, goodput


@pytest.mark.root
def test_bad_settings_are_refused_and_forwarding_goes_on(delay_line) -> None:
    shaper, edge, _ = delay_line
    with pytest.raises(ShaperError, match="refused"):
        shaper.set("sideways", ShapeParams())
    with pytest.raises(ShaperError, match="refused"):
        shaper.set("up", ShapeParams(delay_ms=-1))
    assert ping(edge, 3)[1] == 0


@pytest.mark.root
def test_probe_picks_a_backend_this_kernel_has() -> None:
    backend, why = choose_backend()
    assert backend == ("netem" if netem_available() else "delayline") and why
    with pytest.raises(ValueError, match="unknown shaper"):
        choose_backend("carrier-pigeon")


def test_netem_commands_bound_the_queue() -> None:
    """Command generation only: this kernel may lack sch_netem (the live test is below)."""
    first = tc_commands(
        "eth0",
        ShapeParams(rate_mbps=1.0, delay_ms=10, jitter_ms=2, loss_pct=1, queue_packets=50),
        True,
        ["tc"],
    )
    assert first[0][:6] == ["tc", "qdisc", "add", "dev", "eth0", "root"]
    assert "1000kbit" in first[1] and first[2][-2:] == ["limit", "50"]
    outage = tc_commands("eth0", ShapeParams(rate_mbps=0.0), False, ["tc"])
    assert all(c[1] != "qdisc" or c[2] == "change" for c in outage)
    assert "100.0000%" in outage[-1]


@pytest.mark.skipif(
    os.geteuid() != 0 or not netem_available(),
    reason="this kernel has no sch_netem (the delay line covers it)",
)
def test_netem_backend_live() -> None:
    with namespaces("dsdsh-netem"):
        sh("ip -n dsdsh-netem link add d0 type dummy")
        prefix = ["tc", "-n", "dsdsh-netem"]
        for command in tc_commands("d0", ShapeParams(rate_mbps=5, delay_ms=10), True, prefix):
            sh(shlex.join(command))
        assert "netem" in sh("tc -n dsdsh-netem qdisc show dev d0")


@pytest.mark.root
def test_packet_exact_replay_of_delivery_opportunities(delay_line) -> None:
    """One 1504-byte opportunity every 2 ms (Mahimahi semantics) carries 6.016 Mbit/s."""
    shaper, edge, cloud = delay_line
    shaper.set_deliveries("up", np.arange(2, 1001, 2))
    server = subprocess.Popen(
        ["ip", "netns", "exec", cloud, "iperf3", "-s", "-1", "-J", "-i", "0.25"],
        stdout=subprocess.PIPE,
        text=True,
    )
    time.sleep(0.5)
    sh(f"ip netns exec {edge} iperf3 -c {CLOUD_IP} -u -b 8M -l 1400 -t 3")
    intervals = json.loads(server.communicate(timeout=30)[0])["intervals"]
    received = float(np.median([i["sum"]["bits_per_second"] for i in intervals][2:-2])) / 1e6
    assert received == pytest.approx(6.016 * 1400 / 1442, rel=0.02)
    shaper.set_deliveries("up", None)
    with pytest.raises(ShaperError, match="refused"):
        shaper.set_deliveries("up", np.array([5, 3, 1]))
