"""Record your own edge link as a DSD-Emu trace: run the server at one end, the client at the other.

    python scripts/capture_trace.py server --bind tcp://0.0.0.0:5600          # e.g. the cloud
    python scripts/capture_trace.py client --connect tcp://CLOUD:5600 \\
        --duration 120 -o traces/my-link.csv                                    # the edge

The client measures RTT (echoed pings), then uplink and downlink rate (timed bulk
transfers) every interval, and writes each interval to the CSV as soon as it has it.
Replay the file later with the emulator, or inspect it with trace_stats.py.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
from pathlib import Path

import zmq

from emulator.traces.capture import CaptureSettings, ProbeClient, ProbeServer
from emulator.traces.linktrace import TraceError


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="role", required=True)
    server = sub.add_parser("server", help="answer probes")
    server.add_argument("--bind", default="tcp://0.0.0.0:5600")
    client = sub.add_parser("client", help="measure the path and write a trace")
    client.add_argument("--connect", required=True, help="the probe server, tcp://HOST:PORT")
    client.add_argument("--duration", type=float, default=60.0, help="seconds to record")
    client.add_argument("--interval", type=float, default=1.0, help="seconds per trace piece")
    client.add_argument("--pings", type=int, default=5, help="RTT probes per interval")
    client.add_argument("--mss", type=int, default=1448, help="TCP payload per packet")
    client.add_argument("--mtu", type=int, default=1500, help="bytes per packet on the wire")
    client.add_argument("--label", default="", help="a description kept in the trace")
    client.add_argument("-o", "--output", required=True, help="canonical CSV to write")
    client.add_argument("--quiet", action="store_true", help="no per-interval lines")
    args = parser.parse_args(argv)
    if args.role == "client" and not (args.duration > 0 and args.interval > 0 and args.pings > 0):
        parser.error("--duration, --interval and --pings must be positive")
    return args


def tcp_settings() -> dict[str, str]:
    """This host's TCP settings, which shape what a bulk transfer measures (kept in the trace)."""
    settings = {}
    for name in ("tcp_congestion_control", "tcp_slow_start_after_idle"):
        path = Path("/proc/sys/net/ipv4") / name
        settings[name] = path.read_text().strip() if path.is_file() else "unknown"
    return settings


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        if args.role == "server":
            server = ProbeServer(args.bind)
            signal.signal(signal.SIGTERM, lambda *_: server.stop())
            print(f"capture_trace: probe server on {server.endpoint}", flush=True)
            with contextlib.suppress(KeyboardInterrupt):
                server.serve()
            return 0
        settings = CaptureSettings(
            interval_s=args.interval, pings=args.pings, mtu=args.mtu, mss=args.mss
        )
        client = ProbeClient(args.connect, settings)
        meta = {
            "source": "capture",
            "file": f"captured from {args.connect}" + (f" ({args.label})" if args.label else ""),
            "licence": "captured by the user",
            "derived": f"every {args.interval:g} s: median of {args.pings} echo RTTs split "
            f"evenly, jitter = RTT std / 2, loss = unanswered pings; rates = timed bulk "
            f"goodput x {args.mtu}/{args.mss}",
            **tcp_settings(),
        }
        try:
            trace = client.capture(args.duration, Path(args.output), meta, not args.quiet)
        except KeyboardInterrupt:
            print(
                f"capture_trace: interrupted; {args.output} keeps what was measured",
                file=sys.stderr,
            )
            return 130
        finally:
            client.close()
    except (zmq.ZMQError, TraceError, OSError) as exc:
        print(f"capture_trace: error: {exc}", file=sys.stderr)
        return 2
    print(f"capture_trace: wrote {args.output} ({trace.pieces} pieces, {trace.duration_s:.1f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
