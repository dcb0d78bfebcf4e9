"""Scenario -> Mininet network: edge hosts, a shaping point on every link, the cloud host.

Explore a scenario's network by hand, traces replaying, in Mininet's CLI (as root):
    python -m emulator.net.topology topologies/default.yaml [--shaper delayline]

    edge host --(access link)-- shaper host --+
    edge host --(access link)-- shaper host --+-- dsdagg (LinuxBridge) -- shaper host -- cloud
                                                                          (the WAN link)

With several targets (``cloud: {targets: N}``), the WAN link ends at a second bridge,
``dsdcloud``, that joins the cloud host (which runs the router) and hosts ``target1`` ..
``targetN``, each with its CPU limit; the links inside the cloud are not shaped.

Switches are Linux bridges with no controller (no Open vSwitch module is needed). Edge
hosts are ``CPULimitedHost``s: a scenario's ``cpu`` is a share of one core, Mininet's a share
of the whole machine, so it is divided by the core count. Every shaping point is a host with
two interfaces and no IP address: the ``delayline`` backend forwards frames through a
userspace delay line there; the ``netem`` backend bridges the two interfaces and puts
htb + netem on each one's egress. Host TCP settings are pinned on every host and recorded.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from mininet.net import Mininet
from mininet.node import CPULimitedHost, Host, Node
from mininet.nodelib import LinuxBridge
from mininet.topo import Topo

from emulator.net.cleanup import (
    MANIFEST_DIR,
    cleanup,
    live_runs,
    remove_cgroups,
    write_manifest,
)
from emulator.net.idle_cgroup import IdleCgroup
from emulator.net.replay import ReplayedLink
from emulator.net.shaping.base import LinkShaper
from emulator.net.shaping.control import DelayLineShaper
from emulator.net.shaping.netem import NetemShaper
from emulator.run.interrupts import shielded
from emulator.scenario import CLOUD, LinkSpec, Scenario

SWITCH = "dsdagg"
CLOUD_SWITCH = "dsdcloud"
WAN_SHAPER = "xwan"
OFFLOADS = ("rx", "tx", "tso", "gso", "gro", "lro", "sg")
TCP_SETTINGS = {
    "net.ipv4.tcp_congestion_control": "reno",
    "net.ipv4.tcp_slow_start_after_idle": "0",
}


def shaper_name(host: str) -> str:
    return f"x{host}"


class ScenarioTopo(Topo):
    """The Mininet topology of a scenario (usable on its own, e.g. with ``mn --custom``)."""

    def build(self, scenario: Scenario) -> None:  # type: ignore[override]
        cores = os.cpu_count() or 1
        switch = self.addSwitch(SWITCH, dpid="1")
        for host, group in scenario.edge_hosts():
            edge = self.addHost(host, cls=CPULimitedHost, cpu=group.cpu / cores)
            shaper = self.addHost(shaper_name(host))
            self.addLink(edge, shaper)
            self.addLink(shaper, switch)
        cpu = min(scenario.cloud.cpu / cores, 1.0)
        if scenario.cloud.targets == 1:
            cloud = self.addHost(CLOUD, cls=CPULimitedHost, cpu=cpu)
        else:  # the router's host: pinned to the edges' CPUs, no quota of its own
            cloud = self.addSwitch(CLOUD_SWITCH, dpid="2")
            self.addLink(self.addHost(CLOUD), cloud)
            for name in scenario.target_hosts():
                self.addLink(self.addHost(name, cls=CPULimitedHost, cpu=cpu), cloud)
        if scenario.wan is not None:
            wan = self.addHost(WAN_SHAPER)
            self.addLink(switch, wan)
            self.addLink(wan, cloud)
        else:
            self.addLink(switch, cloud)


@dataclass
class EmulatedNetwork:
    """A running emulation of a scenario's network; ``stop`` always tears everything down."""

    scenario: Scenario
    backend: str
    net: Mininet | None = None
    links: list[ReplayedLink] = field(default_factory=list)
    host_settings: dict[str, dict[str, str]] = field(default_factory=dict)
    results: Path | None = None  # the run's results folder, marked if the run is killed
    # where the speed watches run (``emulator.net.idle_cgroup``); unmade where it cannot be
    idle: IdleCgroup = field(default_factory=lambda: IdleCgroup(f"dsdidle{os.getpid()}"))
    # the CPUs the delay lines are pinned to (the edges', so that their real-time turns
    # never take the target's CPU); None: any
    shaper_cpus: str | None = None

    def start(self) -> EmulatedNetwork:
        try:
            write_manifest(self._manifest_path(), self._cgroup_names(), self.results)
            self.idle.make()
            self.net = Mininet(
                topo=ScenarioTopo(self.scenario),
                switch=LinuxBridge,
                controller=None,
                autoSetMacs=True,
                build=False,
            )
            self.net.build()  # after the assignment: a half-built network is stopped too
            self.net.start()
            self._prepare_hosts()
            for host, group in self.scenario.edge_hosts():
                self.links.append(self._shape(host, shaper_name(host), group.link))
            if self.scenario.wan is not None:
                self.links.append(self._shape("wan", WAN_SHAPER, self.scenario.wan))
        except BaseException:
            with shielded():
                self.stop()
                if not live_runs():  # what Mininet made but had not recorded yet
                    cleanup()
            raise
        return self

    def _manifest_path(self) -> Path:
        return MANIFEST_DIR / f"{os.getpid()}-{id(self)}.json"

    def _cgroup_names(self) -> list[str]:
        limited = [*self.scenario.target_hosts(), *(host for host, _ in self.scenario.edge_hosts())]
        return [*limited, self.idle.path.name]

    def host(self, name: str) -> Host:
        assert self.net is not None
        return self.net.get(name)

    def ip(self, name: str) -> str:
        return self.host(name).IP()

    def _end_hosts(self) -> list[str]:
        cloud = sorted({CLOUD, *self.scenario.target_hosts()})
        return [*cloud, *(host for host, _ in self.scenario.edge_hosts())]

    def _prepare_hosts(self) -> None:
        """Offloads off (TCP through a userspace forwarder never connects otherwise), TCP
        settings pinned and read back, shaping hosts stripped of their addresses."""
        for name in self._end_hosts():
            host = self.host(name)
            for intf in host.intfNames():
                if intf != "lo":
                    host.cmd(f"ethtool -K {intf} {' '.join(f'{o} off' for o in OFFLOADS)}")
            settings = {}
            for key, value in TCP_SETTINGS.items():
                host.cmd(f"sysctl -qw {key}={value}")
                settings[key] = host.cmd(f"sysctl -n {key}").strip()
            self.host_settings[name] = settings
        for shaper in self._shaper_hosts():
            host = self.host(shaper)
            for intf in host.intfNames():
                host.cmd(f"ip addr flush dev {intf}")
                host.cmd(f"ethtool -K {intf} {' '.join(f'{o} off' for o in OFFLOADS)}")

    def _shaper_hosts(self) -> list[str]:
        names = [shaper_name(host) for host, _ in self.scenario.edge_hosts()]
        return names + ([WAN_SHAPER] if self.scenario.wan is not None else [])

    def _shape(self, link: str, shaper: str, spec: LinkSpec) -> ReplayedLink:
        if self.backend != "delayline":
            if spec.packet_exact:
                raise ValueError(f"link {link}: packet_exact replay needs the delayline shaper")
            if spec.logs or spec.once or not all(spec.layout(d).plain for d in ("up", "down")):
                raise ValueError(
                    f"link {link}: Mahimahi's queues, stages, logs and once need the "
                    "delayline shaper"
                )
        host = self.host(shaper)
        edge_side, cloud_side = host.intfNames()[:2]
        instance: LinkShaper
        if self.backend == "delayline":
            instance = DelayLineShaper(
                lambda command: host.popen(
                    command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
                ),
                edge_side,
                cloud_side,
                f"{self.scenario.name}-{link}",
                seed=self.scenario.seed,
                cpus=self.shaper_cpus,
            )
        else:
            host.cmd("ip link add br0 type bridge && ip link set br0 up")
            for intf in (edge_side, cloud_side):
                host.cmd(f"ip link set {intf} master br0")
            tc_in_host = ["mnexec", "-a", str(host.pid), "tc"]
            instance = NetemShaper((tc_in_host, cloud_side), (tc_in_host, edge_side))
        return ReplayedLink(link, instance, spec)

    def stop(self) -> None:
        for link in self.links:
            try:
                link.shaper.close()
            except Exception as exc:  # keep tearing down whatever else is up
                print(f"emulator: closing the {link.name} shaper failed: {exc}")
        self.links.clear()
        if self.net is not None:
            dead = [node.name for node in self.net.values() if _shell_gone(node)]
            if dead:  # Mininet would wait forever on a dead shell's reply: remove by name
                print(f"emulator: the shells of {', '.join(dead)} were killed; removing by name")
                remove_cgroups(self._cgroup_names())
                cleanup()
            else:
                self.net.stop()
            self.net = None
        self.idle.remove()
        self._manifest_path().unlink(missing_ok=True)

    def __enter__(self) -> EmulatedNetwork:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _shell_gone(node: Node) -> bool:
    """Whether the node's shell, which Mininet sends every command to, has exited."""
    return node.shell is None or node.shell.poll() is not None


def main(argv: list[str] | None = None) -> int:
    import argparse

    from mininet.cli import CLI
    from mininet.log import setLogLevel

    from emulator.net.replay import TraceReplayer
    from emulator.net.shaping.probe import choose_backend
    from emulator.scenario import ScenarioError, load_scenario
    from runtime.events import EventLog

    parser = argparse.ArgumentParser(description="Start a scenario's network in Mininet's CLI.")
    parser.add_argument("scenario", help="scenario YAML file")
    parser.add_argument("--shaper", choices=("netem", "delayline"), help="default: probe")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("topology: error: Mininet needs root (run with sudo)")
        return 2
    try:
        scenario = load_scenario(args.scenario)
        backend, why = choose_backend(args.shaper or scenario.shaper)
    except (ScenarioError, ValueError) as exc:
        print(f"topology: error: {exc}")
        return 2
    setLogLevel("info")
    print(f"topology: shaping with {backend} ({why})")
    logs = Path("packet-logs")  # where links that ask for Mahimahi-format logs write them
    with (
        EmulatedNetwork(scenario, backend) as net,
        TraceReplayer(net.links, EventLog(None, "cli"), packet_logs=logs),
    ):
        CLI(net.net)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
