"""Start a delay line in a network namespace and drive it: the ``delayline`` LinkShaper."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

import msgpack
import numpy as np

from emulator.link.pipe import PipeLayout
from emulator.net.shaping.base import PacketLogRequest, ShapeParams
from emulator.net.shaping.delayline import LIVE
from runtime.process import stop_child

Launcher = Callable[[list[str]], subprocess.Popen]
READY_TIMEOUT_S = 20.0
REPLY_TIMEOUT_S = 2.0


class ShaperError(RuntimeError):
    """The shaper could not start or refused a setting."""


def netns_launcher(namespace: str) -> Launcher:
    """Run commands inside a named network namespace (``ip netns exec``)."""

    def launch(command: list[str]) -> subprocess.Popen:
        return subprocess.Popen(
            ["ip", "netns", "exec", namespace, *command],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )

    return launch


class DelayLineShaper:
    """A delay-line process forwarding between ``up_in`` and ``down_in``, set live over a socket."""

    backend = "delayline"

    def __init__(
        self,
        launch: Launcher,
        up_in: str,
        down_in: str,
        name: str,
        seed: int = 0,
        priority: int = 50,
        cpus: str | None = None,
    ) -> None:
        self.folder = tempfile.mkdtemp(prefix=f"dsdemu-{name}-")
        self.control_path = os.path.join(self.folder, "control.sock")
        self.process = launch(
            [
                sys.executable,
                "-m",
                "emulator.net.shaping.delayline",
                "--up-in",
                up_in,
                "--down-in",
                down_in,
                "--control",
                self.control_path,
                "--seed",
                str(seed),
                "--priority",
                str(priority),
                *(["--cpus", cpus] if cpus else []),
            ]
        )
        self.client = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.client.bind(os.path.join(self.folder, "client.sock"))
        self.client.settimeout(REPLY_TIMEOUT_S)
        self._wait_ready()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not os.path.exists(self.control_path):
            if self.process.poll() is not None or time.monotonic() > deadline:
                output = self.process.stdout.read() if self.process.stdout else ""
                self.close()
                raise ShaperError(f"delay line did not start: {output.strip()[-500:]}")
            time.sleep(0.02)

    def _ask(self, message: dict[str, Any]) -> dict[str, Any]:
        self.client.sendto(msgpack.packb(message), self.control_path)
        try:
            reply = msgpack.unpackb(self.client.recv(65536), raw=False)
        except TimeoutError as exc:
            raise ShaperError("the delay line did not answer") from exc
        if not reply.get("ok"):
            raise ShaperError(f"the delay line refused {message}: {reply.get('error')}")
        return reply

    def set(self, direction: str, params: ShapeParams) -> None:
        values = params.to_dict()
        self._ask({"direction": direction, **{key: values[key] for key in LIVE}})

    def configure(self, direction: str, layout: PipeLayout, log: PacketLogRequest | None) -> None:
        """Rebuild one direction as ``layout``, logging its packets where ``log`` asks."""
        self._ask(
            {
                "direction": direction,
                "layout": layout.to_dict(),
                "log": None if log is None else log.to_dict(),
            }
        )

    def set_deliveries(self, direction: str, deliveries_ms: np.ndarray | None) -> None:
        """Packet-exact replay of Mahimahi delivery opportunities on one direction."""
        path = None
        if deliveries_ms is not None:
            path = os.path.join(self.folder, f"deliveries-{direction}.npy")
            np.save(path, np.asarray(deliveries_ms, dtype=np.int64))
        self._ask({"direction": direction, "deliveries_file": path})

    def stats(self) -> dict[str, Any]:
        return self._ask({"stats": True})

    def close(self) -> None:
        stop_child(self.process, grace_s=5)
        self.client.close()
        shutil.rmtree(self.folder, ignore_errors=True)
