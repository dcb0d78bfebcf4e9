"""Test hosts in network namespaces made by the tests themselves, and commands inside them."""

from __future__ import annotations

import contextlib
import shlex
import subprocess
from collections.abc import Iterator

from emulator.net.shaping.control import DelayLineShaper, netns_launcher


def sh(command: str) -> str:
    """Run one command line (split like a shell would); raise with its stderr on failure."""
    result = subprocess.run(shlex.split(command), capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{command}: {result.stderr.strip()}")
    return result.stdout


@contextlib.contextmanager
def namespaces(*names: str) -> Iterator[tuple[str, ...]]:
    """Create the namespaces (loopback up); delete them afterwards, whatever happens."""
    try:
        for name in names:
            sh(f"ip netns add {name}")
            sh(f"ip -n {name} link set lo up")
        yield names
    finally:
        for name in names:
            subprocess.run(["ip", "netns", "del", name], capture_output=True)


def veth(left_ns: str, left: str, right_ns: str, right: str) -> None:
    """A veth pair between two namespaces, both ends up, offloads off (a userspace
    forwarder in the path needs real checksums and MTU-sized frames)."""
    sh(f"ip link add {left} netns {left_ns} type veth peer name {right} netns {right_ns}")
    for ns, dev in ((left_ns, left), (right_ns, right)):
        sh(f"ip -n {ns} link set {dev} up")
        subprocess.run(
            shlex.split(f"ip netns exec {ns} ethtool -K {dev} tx off tso off gso off gro off"),
            capture_output=True,
        )


EDGE_IP, CLOUD_IP = "10.79.0.1", "10.79.0.2"


@contextlib.contextmanager
def delay_line_between(tag: str) -> Iterator[tuple[DelayLineShaper, str, str]]:
    """edge --veth-- middle (a delay line, no IP) --veth-- cloud, in three namespaces:
    (the shaper, the edge's namespace, the cloud's)."""
    edge, middle, cloud = (f"dsdsh-{role}{tag}" for role in "emc")
    with namespaces(edge, middle, cloud):
        veth(edge, "ve", middle, "me")
        veth(middle, "mc", cloud, "vc")
        sh(f"ip -n {edge} addr add {EDGE_IP}/24 dev ve")
        sh(f"ip -n {cloud} addr add {CLOUD_IP}/24 dev vc")
        shaper = DelayLineShaper(netns_launcher(middle), "me", "mc", f"test{tag}")
        try:
            yield shaper, edge, cloud
        finally:
            shaper.close()
