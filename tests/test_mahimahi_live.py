"""Mahimahi parity on the real delay line: packet-exact replay from separate uplink and
downlink files, and each queue discipline against the simulator's model of the link (the
same ``Pipe``, on simulated time) under a saturating UDP load."""

from __future__ import annotations

import os
import random
import shlex
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from netns import CLOUD_IP, delay_line_between
from test_mahimahi import read_mahimahi_log

from emulator.link.mahimahi_log import MahimahiLog
from emulator.link.pipe import PipeLayout
from emulator.link.queues import QueueSpec
from emulator.net.shaping.base import PacketLogRequest
from emulator.traces.importers.mahimahi import read_deliveries

pytestmark = [pytest.mark.root, pytest.mark.slow]

RECORDED = Path(__file__).resolve().parents[2] / "shared" / "traces" / "mahimahi"
DATAGRAM = 1400  # UDP payload: IP packets of 1428 bytes
LINK_ONLY = (("link", None),)


def opportunities(rates_mbps: list[float], seconds_each: float) -> np.ndarray:
    """A Mahimahi schedule: each rate held ``seconds_each``, as one 1500-byte opportunity
    per 1500 x 8 / rate ms (whole ms, repeated where several fall in one)."""
    times: list[float] = []
    start = 0.0
    for rate in rates_mbps:
        gap = 1500 * 8 / (rate * 1000.0)
        times += list(np.arange(start + gap, start + seconds_each * 1000 + 1e-9, gap))
        start += seconds_each * 1000
    return np.floor(np.asarray(times))


def udp_load(edge: str, cloud: str, mbps: float, seconds: float, port: int, down: bool):
    """An iperf3 UDP flow at ``mbps`` (payload) from the edge (``down``: to the edge)."""
    server = subprocess.Popen(
        ["ip", "netns", "exec", cloud, "iperf3", "-s", "-1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(0.3)
    client = subprocess.Popen(
        shlex.split(
            f"ip netns exec {edge} iperf3 -c {CLOUD_IP} -p {port} -u -b {mbps}M "
            f"-l {DATAGRAM} -t {seconds}" + (" -R" if down else "")
        ),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return server, client


def per_second(events: list[list[int]], first: int, seconds: int) -> np.ndarray:
    """Mbit/s per whole second from ``first`` ms, of ``(t, bytes, ...)`` events."""
    rate = np.zeros(seconds)
    for t, size, *_ in events:
        second = (t - first) // 1000
        if 0 <= second < seconds:
            rate[second] += size * 8 / 1e6
    return rate


def test_packet_exact_replay_follows_each_direction_s_own_file(tmp_path) -> None:
    """Uplink 4 then 8 Mbit/s, downlink 12 then 6, a second each, looping; each direction
    saturated in turn: its delivered rate, second by second, is its own file's."""
    files = {"up": opportunities([4, 8], 1.0), "down": opportunities([12, 6], 1.0)}
    with delay_line_between(f"mm{os.getpid()}") as (shaper, edge, cloud):
        for direction, schedule in files.items():
            name = "Uplink" if direction == "up" else "Downlink"
            log = PacketLogRequest(str(tmp_path / f"{direction}.log"), name, direction, "test")
            layout = PipeLayout(LINK_ONLY, QueueSpec("droptail", packets=100))
            shaper.configure(direction, layout, log)
            shaper.set_deliveries(direction, schedule)
        for port, mbps, down in ((5301, 10, False), (5302, 15, True)):
            server, client = udp_load(edge, cloud, mbps, 5, port, down=down)
            client.wait(timeout=60)
            server.wait(timeout=60)
    for direction, rates in (("up", [4, 8]), ("down", [12, 6])):
        log = read_mahimahi_log(tmp_path / f"{direction}.log")
        seconds = (log["#"][-1][0] - log["base"]) // 1000
        capacity = per_second(log["#"], log["base"], seconds)
        delivered = per_second(log["-"], log["base"], seconds)
        expected = np.array((rates * seconds)[:seconds]) * 1504 / 1500  # 1504 B each
        assert np.allclose(capacity[1:], expected[1:], rtol=0.01), (direction, capacity)
        # the whole seconds the flow saturated, from one after its first datagram
        arrivals = [t - log["base"] for t, *_ in log["+"] if _[0] > 1000]
        busy = slice(arrivals[0] // 1000 + 2, arrivals[-1] // 1000)
        assert busy.stop - busy.start >= 3, (direction, busy)
        assert np.allclose(delivered[busy], capacity[busy], rtol=0.05), (direction, delivered)


DISCIPLINES = {
    "infinite": QueueSpec.infinite(),
    "droptail": QueueSpec("droptail", packets=100),
    "drophead": QueueSpec("drophead", packets=None, bytes=150_000),
    "codel": QueueSpec("codel", packets=1000, target_ms=5.0, interval_ms=100.0),
    "pie": QueueSpec("pie", packets=1000, qdelay_ref_ms=15.0, max_burst_ms=150.0),
}

# seconds of load: PIE's mean delay over a short run moves with its random drops and the
# phase of its 30-ms updates (8-s runs: 38-56 ms here, in either world), so it gets longer
LOAD_S = {kind: 8 for kind in DISCIPLINES} | {"pie": 40}


def simulated_log(schedule: np.ndarray, queue: QueueSpec, arrivals, path: Path) -> dict:
    """The same link in simulated time, fed the emulated link's own arrivals (each at the
    middle of its logged ms), logged in the same format."""
    log = MahimahiLog(path, "Uplink", "sim", queue.describe(), "sim", 0.0, 0, 0.0)
    pipe = PipeLayout(LINK_ONLY, queue, seed=7).build(random.Random(), log)
    pipe.use_deliveries(schedule, 0.0)
    dropped: list = []
    for t, size in arrivals:
        pipe.send((t + 0.5, size, None), dropped)
        pipe.advance(t + 0.5)
    pipe.advance(arrivals[-1][0] + 10_000.0)
    log.close()
    return read_mahimahi_log(path)


@pytest.mark.skipif(not RECORDED.is_dir(), reason="the recorded traces (../shared) are absent")
@pytest.mark.parametrize("kind", list(DISCIPLINES))
def test_each_queue_discipline_matches_the_simulator_on_a_recorded_trace(tmp_path, kind) -> None:
    """T-Mobile LTE's uplink (5.6 Mbit/s over its first 10 s) saturated at 7 Mbit/s for
    8 s: delivered throughput and mean queueing delay within 5 % of the simulated link's."""
    queue = DISCIPLINES[kind]
    schedule = read_deliveries(RECORDED / "TMobile-LTE-short.up").astype(float)
    with delay_line_between(f"q{os.getpid()}") as (shaper, edge, cloud):
        request = PacketLogRequest(str(tmp_path / "emu.log"), "Uplink", "TMobile", kind)
        shaper.configure("up", PipeLayout(LINK_ONLY, queue, seed=7), request)
        shaper.set_deliveries("up", schedule)
        server, client = udp_load(edge, cloud, 7, LOAD_S[kind], 5303, down=False)
        client.wait(timeout=60)
        server.wait(timeout=60)
        time.sleep(0.5 if kind != "infinite" else 8.0)  # the queue drains into the log
    emulated = read_mahimahi_log(tmp_path / "emu.log")
    base = emulated["base"]
    arrivals = [(t - base, size) for t, size in emulated["+"]]
    simulated = simulated_log(schedule, queue, arrivals, tmp_path / "sim.log")
    window = (arrivals[0][0] + 1000, arrivals[-1][0])  # from 1 s into the load to its end

    def measure(log: dict, offset: int) -> tuple[float, float]:
        gone = [e for e in log["-"] if window[0] <= e[0] - offset < window[1]]
        mbps = sum(e[1] for e in gone) * 8 / (window[1] - window[0]) / 1000
        return mbps, float(np.mean([e[2] for e in gone]))

    emu_rate, emu_delay = measure(emulated, base)
    sim_rate, sim_delay = measure(simulated, 0)
    assert emu_rate == pytest.approx(sim_rate, rel=0.05), (kind, emu_rate, sim_rate)
    assert emu_delay == pytest.approx(sim_delay, rel=0.05), (kind, emu_delay, sim_delay)
