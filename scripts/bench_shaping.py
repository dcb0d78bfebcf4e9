"""Benchmark link shaping: replay a step trace on a two-host Mininet topology and measure it.

One edge host and the cloud host, a shaping point between them. A step trace (one-way
delay 10 -> 40 -> 5 ms, rate 20 -> 5 -> 50 Mbit/s) is replayed three times: with pings
every 10 ms (RTT error, settle time after each step), with iperf3 UDP in each step, twice
as long (rate error after UDP/IP and Ethernet header overhead), and with 10% uplink loss
(loss error). The last line is one JSON object. Needs root.

    python scripts/bench_shaping.py [--shaper netem|delayline] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from mininet.log import setLogLevel

from emulator.net.replay import TraceReplayer
from emulator.net.shaping.probe import choose_backend
from emulator.net.topology import CLOUD, EmulatedNetwork
from emulator.scenario import CloudSpec, EdgeGroup, LinkSpec, Scenario, Workload
from emulator.traces.linktrace import LinkTrace
from runtime.events import EventLog

DELAYS_MS = (10.0, 40.0, 5.0)
RATES_MBPS = (20.0, 5.0, 50.0)
UDP_PAYLOAD = 1400
UDP_PER_WIRE = UDP_PAYLOAD / (UDP_PAYLOAD + 8 + 20 + 14)  # UDP, IP, Ethernet headers
LOSS_PCT = 10.0


def step_trace(step_s: float, loss_pct: float = 0.0) -> LinkTrace:
    times = np.arange(len(DELAYS_MS)) * step_s
    series = {
        "rate_mbps": np.array(RATES_MBPS),
        "delay_ms": np.array(DELAYS_MS),
        "jitter_ms": np.zeros(3),
        "loss_pct": np.full(3, loss_pct),
    }
    down = {k: v.copy() for k, v in series.items()}
    return LinkTrace(times, step_s * len(DELAYS_MS), series, down, {"source": "bench step"})


def scenario(trace: LinkTrace) -> Scenario:
    group = EdgeGroup("edge", 1, "int8", 1.0, 1, "fixed:4", LinkSpec(trace, "step", 100))
    return Scenario(
        "bench", Path("bench"), 0, None, CloudSpec(cpu=1.0), [group], None, Workload(), {}
    )


def ping_samples(
    net: EmulatedNetwork, seconds: float, interval: float
) -> list[tuple[float, float]]:
    """(send wall time, RTT ms) for every reply of a ping run from the edge to the cloud."""
    count = int(seconds / interval)
    out = net.host("edge1").cmd(f"ping -D -n -i {interval} -c {count} -W 1 {net.ip(CLOUD)}")
    samples = []
    for stamp, rtt in re.findall(r"^\[([\d.]+)\].*time=([\d.]+) ms", out, flags=re.M):
        samples.append((float(stamp) - float(rtt) / 1000.0, float(rtt)))
    return samples


def measure_rtt(backend: str, step_s: float) -> dict[str, float]:
    trace = step_trace(step_s)
    with EmulatedNetwork(scenario(trace), backend) as net:
        net.host("edge1").cmd(f"ping -c 3 -i 0.05 {net.ip(CLOUD)}")  # warm ARP caches
        replay = TraceReplayer(net.links, EventLog(None, "bench"), loop=False)
        replay.start()
        start = time.time()
        samples = ping_samples(net, step_s * len(DELAYS_MS) - 0.05, 0.01)
        replay.stop()
    errors, settle = [], []
    for index, delay in enumerate(DELAYS_MS):
        step_at = start + index * step_s
        window = [(t, rtt) for t, rtt in samples if step_at <= t < step_at + step_s]
        steady = [rtt for t, rtt in window if t > step_at + 0.1]
        errors += [abs(rtt - 2 * delay) for rtt in steady]
        if index:
            # Settled: within 1 ms of the value the step settles to (its static error is
            # what rtt_error reports).
            final = float(np.median(steady))
            good = [t for t, rtt in window if abs(rtt - final) < 1.0]
            settle.append(((good[0] - step_at) * 1000.0) if good else step_s * 1000.0)
    return {
        "rtt_error_ms_p50": float(np.percentile(errors, 50)),
        "rtt_error_ms_p99": float(np.percentile(errors, 99)),
        "step_settle_ms": float(max(settle)),
        "replay_lateness_ms_max": float(max(replay.lateness_ms, default=0.0)),
        "rtt_samples": len(errors),
    }


def measure_rates(backend: str, step_s: float) -> dict[str, object]:
    """UDP at 110% of each step's rate; the receiver's rate in the step's steady middle.

    UDP measures the shaper itself: TCP's ramp-up after each rate change would be measured
    too (TCP goodput through the shaper is reported beside it by iperf3 runs elsewhere).
    """
    trace = step_trace(step_s)
    received = []
    with EmulatedNetwork(scenario(trace), backend) as net:
        replay = TraceReplayer(net.links, EventLog(None, "bench"), loop=False)
        replay.start()
        start = time.time()
        for index, rate in enumerate(RATES_MBPS):
            server = net.host(CLOUD).popen(
                ["iperf3", "-s", "-1", "-J", "-i", "0.25"], stdout=subprocess.PIPE, text=True
            )
            time.sleep(max(0.0, start + index * step_s + 0.3 - time.time()))
            net.host("edge1").cmd(
                f"iperf3 -c {net.ip(CLOUD)} -u -b {rate * 1.1:.2f}M "
                f"-l {UDP_PAYLOAD} -t {step_s - 1.0:.1f}"
            )
            intervals = json.loads(server.communicate(timeout=30)[0])["intervals"]
            rates = [i["sum"]["bits_per_second"] / 1e6 for i in intervals]
            received.append(float(np.median(rates[2:-2] or rates)))
        replay.stop()
    errors = [
        abs(got / (rate * UDP_PER_WIRE) - 1) * 100
        for got, rate in zip(received, RATES_MBPS, strict=True)
    ]
    return {
        "rate_error_pct": float(max(errors)),
        "rate_error_pct_each": errors,
        "received_mbps": received,
    }


def measure_loss(backend: str, seconds: float) -> dict[str, float]:
    trace = step_trace(seconds, LOSS_PCT)
    trace.down["loss_pct"][:] = 0.0  # loss on the uplink only: ping loss = uplink loss
    with EmulatedNetwork(scenario(trace), backend) as net:
        replay = TraceReplayer(net.links, EventLog(None, "bench"), loop=False)
        replay.start()
        count = int(seconds / 0.005)
        out = net.host("edge1").cmd(f"ping -q -n -i 0.005 -c {count} -W 1 {net.ip(CLOUD)}")
        replay.stop()
    lost = float(re.search(r"([\d.]+)% packet loss", out).group(1))
    sent = int(re.search(r"(\d+) packets transmitted", out).group(1))
    return {"loss_error_pct": abs(lost - LOSS_PCT), "loss_measured_pct": lost, "loss_probes": sent}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shaper", choices=("netem", "delayline"), help="default: probe")
    parser.add_argument("--step", type=float, default=2.0, help="seconds per trace step")
    parser.add_argument("--json", action="store_true", help="print only the JSON summary")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print(
            "bench_shaping: error: needs root (network namespaces); run with sudo", file=sys.stderr
        )
        return 2
    setLogLevel("error")
    try:
        backend, why = choose_backend(args.shaper)
    except ValueError as exc:
        print(f"bench_shaping: error: {exc}", file=sys.stderr)
        return 2
    started = time.monotonic()
    result: dict[str, object] = {"backend": backend, "backend_reason": why}
    result.update(measure_rtt(backend, args.step))
    result.update(measure_rates(backend, 2 * args.step))
    result.update(measure_loss(backend, 2 * args.step))
    result["wall_s"] = time.monotonic() - started
    if not args.json:
        for key, value in result.items():
            print(f"{key:<24} {value}", file=sys.stderr)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
