"""The ``netem`` backend: htb for the rate (with an explicit bounded queue) and netem under it
for delay, jitter and loss, changed live with ``tc ... change``.

Each direction is shaped at its sender's egress: the uplink on the edge-side interface, the
downlink on the cloud-side one. htb's default 1000-packet leaf queue would add seconds of
delay at 1 Mbit/s, so netem's own ``limit`` is the bounded queue.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable

from emulator.link.pipe import PipeLayout
from emulator.net.shaping.base import PacketLogRequest, ShapeParams

UNLIMITED_MBIT = 100_000  # htb needs a rate; 100 Gbit/s stands for "no limit"

Runner = Callable[[list[str]], None]


def run_tc(command: list[str]) -> None:
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)}: {result.stderr.strip()}")


def tc_commands(
    device: str, params: ShapeParams, first: bool, prefix: list[str]
) -> list[list[str]]:
    """The tc commands that put ``params`` on ``device`` (``first``: create, else change)."""
    rate = params.rate_mbps if params.rate_mbps is not None else UNLIMITED_MBIT
    # An outage (rate 0): htb cannot take 0, so hold the rate minimal and drop everything.
    loss = 100.0 if rate <= 0 else params.loss_pct
    rate_kbit = max(int(rate * 1000), 8)
    verb = "add" if first else "change"
    commands = []
    if first:
        commands.append(
            [*prefix, "qdisc", "add", "dev", device, "root", "handle", "1:", "htb", "default", "10"]
        )
    commands.append(
        [
            *prefix,
            "class",
            verb,
            "dev",
            device,
            "parent",
            "1:",
            "classid",
            "1:10",
            "htb",
            "rate",
            f"{rate_kbit}kbit",
            "ceil",
            f"{rate_kbit}kbit",
        ]
    )
    netem = ["delay", f"{params.delay_ms:.3f}ms"]
    if params.jitter_ms > 0:
        netem += [f"{params.jitter_ms:.3f}ms", "distribution", "normal"]
    netem += ["loss", f"{loss:.4f}%", "limit", str(params.queue_packets)]
    commands.append(
        [*prefix, "qdisc", verb, "dev", device, "parent", "1:10", "handle", "10:", "netem", *netem]
    )
    return commands


class NetemShaper:
    """Shapes one link through tc on the two interfaces of its ends."""

    backend = "netem"

    def __init__(
        self,
        up_device: tuple[list[str], str],
        down_device: tuple[list[str], str],
        runner: Runner = run_tc,
    ) -> None:
        """``*_device``: (command prefix that runs tc in the right namespace, interface)."""
        self.devices = {"up": up_device, "down": down_device}
        self.created: set[str] = set()
        self.runner = runner

    def set(self, direction: str, params: ShapeParams) -> None:
        prefix, device = self.devices[direction]
        for command in tc_commands(device, params, direction not in self.created, prefix):
            self.runner(command)
        self.created.add(direction)

    def configure(self, direction: str, layout: PipeLayout, log: PacketLogRequest | None) -> None:
        """netem has one layout (loss, a drop-tail packet queue at the rate, delay) and no
        packet log; anything else needs the delay line."""
        queue = layout.queue
        plain = queue.kind == "droptail" and queue.bytes is None and queue.packets is not None
        if layout.stages != PipeLayout().stages or not plain or layout.once or log is not None:
            raise ValueError(
                f"tc/netem shapes loss, a drop-tail packet queue and delay only (asked: "
                f"{queue.describe()}); use the delayline shaper"
            )

    def set_deliveries(self, direction: str, deliveries_ms: object) -> None:
        raise ValueError("tc cannot replay delivery opportunities; use the delayline shaper")

    def close(self) -> None:
        for direction in self.created:
            prefix, device = self.devices[direction]
            subprocess.run([*prefix, "qdisc", "del", "dev", device, "root"], capture_output=True)
        self.created.clear()
