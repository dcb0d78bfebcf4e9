"""Capture against a known path: two network namespaces, a veth pair, htb rate limits."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from emulator.capture import CaptureSettings, ProbeClient, ProbeServer
from emulator.traces.csvio import read_trace

ROOT = Path(__file__).resolve().parents[1]
UP_MBIT, DOWN_MBIT = 20, 40
EDGE_IP, CLOUD_IP = "10.77.0.1", "10.77.0.2"


def sh(*command: str) -> str:
    return subprocess.run(command, check=True, capture_output=True, text=True).stdout


@pytest.fixture
def shaped_path():
    """edge namespace --veth-- cloud namespace; htb limits each direction at its sender."""
    if os.geteuid() != 0 or shutil.which("ip") is None or shutil.which("tc") is None:
        pytest.skip("needs root with iproute2 (ip, tc) to build network namespaces")
    edge, cloud = f"dsdcap-e{os.getpid()}", f"dsdcap-c{os.getpid()}"
    try:
        sh("ip", "netns", "add", edge)
        sh("ip", "netns", "add", cloud)
        sh(
            "ip",
            "link",
            "add",
            "ve",
            "netns",
            edge,
            "type",
            "veth",
            "peer",
            "name",
            "vc",
            "netns",
            cloud,
        )
        for ns, dev, ip, rate in (
            (edge, "ve", EDGE_IP, UP_MBIT),
            (cloud, "vc", CLOUD_IP, DOWN_MBIT),
        ):
            sh("ip", "-n", ns, "addr", "add", f"{ip}/24", "dev", dev)
            sh("ip", "-n", ns, "link", "set", dev, "up")
            sh("ip", "-n", ns, "link", "set", "lo", "up")
            # Loss-based TCP fills a short burst; BBR's pacing under-fills it here (measured
            # 18.8-19.3 of 20 Mbit/s). The capture records the congestion control it ran with.
            sh("ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv4.tcp_congestion_control=reno")
            if shutil.which("ethtool"):
                subprocess.run(
                    [
                        "ip",
                        "netns",
                        "exec",
                        ns,
                        "ethtool",
                        "-K",
                        dev,
                        "tso",
                        "off",
                        "gso",
                        "off",
                        "gro",
                        "off",
                    ],
                    capture_output=True,
                )
            sh(
                "tc",
                "-n",
                ns,
                "qdisc",
                "add",
                "dev",
                dev,
                "root",
                "handle",
                "1:",
                "htb",
                "default",
                "10",
            )
            sh(
                "tc",
                "-n",
                ns,
                "class",
                "add",
                "dev",
                dev,
                "parent",
                "1:",
                "classid",
                "1:10",
                "htb",
                "rate",
                f"{rate}mbit",
                "ceil",
                f"{rate}mbit",
            )
            sh(
                "tc",
                "-n",
                ns,
                "qdisc",
                "add",
                "dev",
                dev,
                "parent",
                "1:10",
                "pfifo",
                "limit",
                "200",
            )
        yield edge, cloud
    finally:
        for ns in (edge, cloud):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def test_capture_matches_htb_rates_and_ping_rtt(shaped_path, tmp_path) -> None:
    edge, cloud = shaped_path
    server = subprocess.Popen(
        [
            "ip",
            "netns",
            "exec",
            cloud,
            sys.executable,
            str(ROOT / "scripts" / "capture_trace.py"),
            "server",
            "--bind",
            f"tcp://{CLOUD_IP}:5600",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert "probe server" in server.stdout.readline()
        out = tmp_path / "captured.csv"
        client = subprocess.run(
            [
                "ip",
                "netns",
                "exec",
                edge,
                sys.executable,
                str(ROOT / "scripts" / "capture_trace.py"),
                "client",
                "--connect",
                f"tcp://{CLOUD_IP}:5600",
                "--duration",
                "6",
                "--quiet",
                "-o",
                str(out),
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert client.returncode == 0, client.stderr
        ping = sh("ip", "netns", "exec", edge, "ping", "-c", "20", "-i", "0.05", CLOUD_IP)
    finally:
        server.terminate()
        server.wait(timeout=10)
    trace = read_trace(out)
    up = np.median(trace.up["rate_mbps"][1:])
    down = np.median(trace.down["rate_mbps"][1:])
    print(f"captured up {up:.2f} down {down:.2f} Mbit/s")
    assert up == pytest.approx(UP_MBIT, rel=0.05), trace.up["rate_mbps"]
    assert down == pytest.approx(DOWN_MBIT, rel=0.05), trace.down["rate_mbps"]
    ping_avg = float(re.search(r"= [\d.]+/([\d.]+)/", ping).group(1))
    captured_rtt = float(np.median(trace.rtt_ms()))
    print(f"captured RTT {captured_rtt:.3f} ms, ping {ping_avg:.3f} ms")
    assert abs(captured_rtt - ping_avg) < 1.0, (captured_rtt, ping_avg)
    assert trace.meta["source"] == "capture" and trace.meta["tcp_congestion_control"] == "reno"


def test_capture_writes_rows_as_it_goes_and_survives_bad_probes(tmp_path) -> None:
    server = ProbeServer("tcp://127.0.0.1:*")
    thread = threading.Thread(target=server.serve, daemon=True)
    thread.start()
    import zmq

    rogue = zmq.Context.instance().socket(zmq.DEALER)
    rogue.connect(server.endpoint)
    for frame in (b"\x00garbage", b"\x81\xa4type\xa4down", b"\x81\xa4type\xa2up"):
        rogue.send(frame)
        assert rogue.poll(2000) and b"error" in rogue.recv()
    rogue.close(0)
    client = ProbeClient(server.endpoint, CaptureSettings(interval_s=0.5, pings=3))
    trace = client.capture(1.0, tmp_path / "loop.csv", {"source": "capture"})
    client.close()
    server.stop()
    thread.join(5)
    assert trace.pieces == 2 and trace.duration_s >= 1.0
    assert np.all(trace.up["loss_pct"] == 0) and np.all(trace.down["rate_mbps"] > 0)
