"""Runs a scenario in the emulator: network up, real processes, trace replay, workload, logs,
and always a full teardown.

The target server runs on the cloud host and one draft client per edge host, each with the
project's interpreter, its thread count, its CPUs and its host's CPU limit. Every draft
loads its models first and says ``draft: loaded``; once all have, each gets SIGUSR2 and
times its speed probe (beside the other edges, as it will run) and says ``draft: ready``;
then one speed watch per CPU of the plan (``runtime.speedwatch``, outside the emulated
network) loads and starts probing that CPU's role in its idle time; the trace replay
starts, and at that same moment (the traces' time zero, the simulator's time zero too)
every edge gets SIGUSR1 and starts its workload. Each process writes its own event log
into the results folder; nothing is kept only in memory.

Emulated edges (``draft: replay``) load no model and take no speed probe: they start at
once, replaying the profile given for their draft; where any replays DSD rounds, one shared
real draft process (``runtime.draft_service``) runs outside the emulated network, on the
edges' CPU, for the rounds whose text left the recorded tables.
"""

from __future__ import annotations

import math
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from emulator.net.replay import TraceReplayer
from emulator.net.topology import CLOUD, EmulatedNetwork
from emulator.run.interrupts import shielded
from emulator.run.resources import ResourceSampler
from emulator.scenario import EdgeGroup, Scenario
from emulator.sim.simulation import cpu_share, quota_phase_ms
from runtime.events import EventLog
from runtime.process import stop_child

PORT = 5555
ROUTER = "router"  # the router's process (and its CPU in the plan) with several targets
READY_TIMEOUT_S = 600.0


class EmulationError(RuntimeError):
    """The emulation could not run; the message says which process and shows its output."""


def cpu_plan(scenario: Scenario, cpus: list[int] | None = None) -> dict[str, str]:
    """Which CPUs each process is pinned to: the target gets the last CPU to itself (where
    its profile was measured), the edges share the others in turn (all of them on a
    one-CPU machine; the link shapers run on the edges' CPUs too). Several targets take
    the last CPUs, as many to a CPU as their shares fit in one, and the router (``router``)
    runs on the edges' first CPU; ``cloud`` names the first target's CPU. Recorded in the
    results: contention is a fidelity hazard."""
    cpus = sorted(cpus if cpus is not None else os.sched_getaffinity(0))
    targets = scenario.target_hosts()
    plan: dict[str, str] = {}
    if len(targets) == 1:
        plan[CLOUD] = str(cpus[-1])
        edge_cpus = cpus[:-1] or cpus
    else:
        per_cpu = max(1, math.floor(1.0 / scenario.cloud.cpu + 1e-9))
        needed = math.ceil(len(targets) / per_cpu)
        if needed >= len(cpus):
            raise EmulationError(
                f"{len(targets)} targets of {scenario.cloud.cpu:g} core each take {needed} "
                f"CPU(s) and the edges one more; this machine gives {len(cpus)} (lower "
                "cloud.cpu, e.g. 0.5 for two targets on one CPU)"
            )
        for index, host in enumerate(targets):
            plan[host] = str(cpus[-1 - index // per_cpu])
        plan[CLOUD] = plan[targets[0]]
        edge_cpus = cpus[:-needed]
        plan[ROUTER] = str(edge_cpus[0])
    for index, (host, _) in enumerate(scenario.edge_hosts()):
        plan[host] = str(edge_cpus[index % len(edge_cpus)])
    return plan


@dataclass
class Child:
    """One runtime process of the run and the files it writes."""

    name: str
    process: subprocess.Popen
    output: Path
    log: Path

    def output_tail(self, lines: int = 15) -> str:
        try:
            text = self.output.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(text[-lines:])


@dataclass
class EmulationResult:
    backend: str
    host_settings: dict[str, dict[str, str]]
    cpus: dict[str, str]
    t_start: float
    wall_s: float
    logs: list[Path]
    edge_exit_codes: dict[str, int | None]
    replay_lateness_ms_p99: float | None
    interrupted: bool = False
    watches_idle_cgroup: bool = True  # False: the watches ran at SCHED_IDLE alone


Watcher = Callable[[float, bool], None]


class Emulation:
    """One emulated run of a scenario into ``out``; ``run`` returns when every edge is done."""

    def __init__(
        self,
        scenario: Scenario,
        out: Path,
        backend: str,
        python: str,
        timeout_s: float = 3600.0,
        say: Callable[[str], None] = print,
        replay_profiles: dict[str, Path] | None = None,
    ) -> None:
        why = scenario.simulator_only()
        if why:
            raise ValueError(f"{scenario.path}: {why}: only the simulator runs it")
        self.scenario = scenario
        # per draft spec, the profile its emulated edges replay (with its thread count)
        self.replay_profiles = replay_profiles or {}
        self._service_folder: str | None = None
        self.out = out
        self.backend = backend
        self.python = python
        self.timeout_s = timeout_s
        self.say = say
        self.cpus = cpu_plan(scenario)
        self.children: list[Child] = []

    # -- processes -----------------------------------------------------------------------
    def _launch(self, net: EmulatedNetwork, name: str, module: str, args: list[str]) -> Child:
        """A runtime process in host ``name``'s namespace."""
        return self._spawn(name, module, args, net.host(name).popen)

    def _spawn(
        self, name: str, module: str, args: list[str], popen: Callable[..., subprocess.Popen]
    ) -> Child:
        """``python -m module args --log`` into the results folder, its output there too."""
        output, log = self.out / f"{name}.txt", self.out / f"{name}.jsonl"
        command = [self.python, "-u", "-m", module, *args, "--log", str(log)]
        with output.open("w") as handle:
            process = popen(
                command,
                stdout=handle,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        child = Child(name, process, output, log)
        self.children.append(child)
        return child

    def _start_watches(self, net: EmulatedNetwork) -> list[Child]:
        """A speed watch on each CPU of the plan: the target's role on the cloud's CPU, the
        draft of the first edge pinned there on an edge's CPU; in the network's idle cgroup
        (where there is none, at ``SCHED_IDLE`` alone, and the run's notes say so)."""
        roles = {self.cpus[host]: ("target", "") for host in self.scenario.target_hosts()}
        for host, group in self.scenario.edge_hosts():
            if group.replay:  # an emulated edge computes nothing to probe
                continue
            roles.setdefault(self.cpus[host], ("draft", group.draft))
        watches = []
        for cpu, (role, draft) in sorted(roles.items()):
            args = ["--role", role, "--target", self.scenario.cloud.model, "--cpus", cpu]
            args += ["--draft", draft] if draft else []
            watch = self._spawn(f"watch-cpu{cpu}", "runtime.speedwatch", args, subprocess.Popen)
            net.idle.add(watch.process.pid)
            watches.append(watch)
        return watches

    def _start_target(self, net: EmulatedNetwork, host: str) -> Child:
        cloud = self.scenario.cloud
        args = [
            "--bind",
            f"tcp://0.0.0.0:{PORT}",
            "--model",
            cloud.model,
            "--threads",
            str(cloud.threads),
            "--cpus",
            self.cpus[host],
            "--max-batch",
            str(cloud.max_batch),
            "--max-wait-ms",
            str(cloud.max_wait_ms),
            "--device",
            cloud.device,
            "--dtype",
            cloud.dtype,
            "--seed",
            str(self.scenario.seed),
            "--speed-probe",
        ]
        if cloud.draft:
            args += ["--draft", cloud.draft]
        return self._launch(net, host, "runtime.target", args)

    def _start_cloud(self, net: EmulatedNetwork) -> None:
        """The target replicas, and with several the router in front of them."""
        hosts = self.scenario.target_hosts()
        self._wait_for([self._start_target(net, host) for host in hosts], "target: serving")
        if len(hosts) == 1:
            return
        args = ["--bind", f"tcp://0.0.0.0:{PORT}", "--policy", self.scenario.cloud.router]
        for host in hosts:
            args += ["--target", f"tcp://{net.ip(host)}:{PORT}"]
        args += ["--cpus", self.cpus[ROUTER], "--seed", str(self.scenario.seed)]
        router = self._spawn(ROUTER, "runtime.router", args, net.host(CLOUD).popen)
        self._wait_for([router], "router: serving")

    def _needs_service(self) -> bool:
        return any(g.replay and g.mode == "dsd" for g in self.scenario.edges)

    def _service_endpoint(self) -> str:
        if self._service_folder is None:  # a short path: a socket's is at most 107 bytes
            self._service_folder = tempfile.mkdtemp(prefix="dsdemu-draft-")
        return f"ipc://{self._service_folder}/draft.sock"

    def _start_service(self) -> Child:
        """The shared real draft, in the root namespace on the edges' first CPU."""
        drafts = sorted({g.draft for g in self.scenario.edges if g.replay and g.mode == "dsd"})
        if len(drafts) > 1:
            raise EmulationError(f"emulated edges replay {drafts}: the shared draft is one model")
        cpu = next(self.cpus[h] for h, g in self.scenario.edge_hosts() if g.replay)
        args = ["--bind", self._service_endpoint(), "--base", self.scenario.cloud.model]
        args += ["--draft", drafts[0], "--cpus", cpu, "--seed", str(self.scenario.seed)]
        return self._spawn("draft-service", "runtime.draft_service", args, subprocess.Popen)

    def _replay_args(self, host: str, group: EdgeGroup) -> list[str]:
        """What an emulated edge replays and the CPU it spends the profile's times on."""
        profile = self.replay_profiles.get(group.draft)
        if profile is None:
            raise EmulationError(f"no profile of {group.draft} given for the emulated edges")
        args = ["--replay-profile", str(profile), "--draft-speed", str(group.speed)]
        args += ["--quota-share", str(cpu_share(group.cpu, group.threads))]
        args += ["--quota-phase-ms", str(quota_phase_ms(self.scenario.seed, host))]
        if self._needs_service():
            args += ["--replay-service", self._service_endpoint()]
        return args

    def _start_edge(self, net: EmulatedNetwork, host: str, group: EdgeGroup) -> Child:
        workload = self.scenario.workload
        args = [
            "--connect",
            f"tcp://{net.ip(CLOUD)}:{PORT}",
            "--base",
            self.scenario.cloud.model,
            "--draft",
            group.draft_spec,
            "--policy",
            group.policy,
            "--mode",
            group.mode,
            "--edge",
            host,
            "--requests",
            str(workload.requests_per_edge),
            "--max-new-tokens",
            str(workload.max_new_tokens),
            "--threads",
            str(group.threads),
            "--cpus",
            self.cpus[host],
            "--seed",
            str(self.scenario.seed),
            "--timeout",
            "300",
            "--wait-start",
            "--print",
        ]
        args += self._replay_args(host, group) if group.replay else ["--speed-probe"]
        for text in workload.prompts:
            args += ["--prompt", text]
        if workload.ignore_eos:
            args.append("--ignore-eos")
        if workload.arrival == "poisson":
            args += ["--arrival-rate", str(workload.poisson_per_s)]
        return self._launch(net, host, "runtime.draft", args)

    def _wait_for(self, children: list[Child], marker: str) -> None:
        """Until every child's output holds ``marker``; a child that exits first is an error."""
        waiting = list(children)
        deadline = time.monotonic() + READY_TIMEOUT_S
        while waiting:
            for child in list(waiting):
                if marker in child.output.read_text(errors="replace"):
                    waiting.remove(child)
                elif child.process.poll() is not None:
                    raise EmulationError(
                        f"{child.name} exited ({child.process.returncode}) before it was "
                        f"ready:\n{child.output_tail()}"
                    )
            if time.monotonic() > deadline:
                names = ", ".join(c.name for c in waiting)
                raise EmulationError(f"not ready after {READY_TIMEOUT_S:.0f} s: {names}")
            time.sleep(0.2)

    # -- the run -------------------------------------------------------------------------
    def run(self, watch: Watcher | None = None) -> EmulationResult:
        """Everything from network up to teardown; ``watch(t_start, final)`` is called about
        once a second while the workload runs (progress display)."""
        started = time.monotonic()
        edge_cpus = {self.cpus[host] for host, _ in self.scenario.edge_hosts()}
        net = EmulatedNetwork(
            self.scenario, self.backend, results=self.out, shaper_cpus=",".join(sorted(edge_cpus))
        )
        interrupted = False
        lateness: list[float] = []
        t_start = 0.0
        try:
            net.start()
            self.say(f"network up ({len(net.links)} shaped links, {self.backend})")
            self._start_cloud(net)
            if self._needs_service():
                self._wait_for([self._start_service()], "draft service: serving")
            hosts = self.scenario.edge_hosts()
            edges = [self._start_edge(net, host, g) for host, g in hosts]
            real = [edge for edge, (_, g) in zip(edges, hosts, strict=True) if not g.replay]
            emulated = len(edges) - len(real)
            self.say(
                f"target serving; {len(real)} edge(s) loading their models"
                + (f", {emulated} emulated edge(s) replaying the profile" if emulated else "")
            )
            self._wait_for(real, "draft: loaded")
            for edge in real:
                os.kill(edge.process.pid, signal.SIGUSR2)
            self._wait_for(edges, "draft: ready")
            self._wait_for(self._start_watches(net), "watch: ready")
            replay_log = EventLog(self.out / "links.jsonl", "replay")
            sampler = ResourceSampler(self._sampled_processes(net), self.out / "resources.jsonl")
            replay = TraceReplayer(net.links, replay_log, packet_logs=self.out / "packet-logs")
            with replay, sampler:
                t_start = time.time()  # the traces' time zero, to within the replay start
                for edge in edges:
                    os.kill(edge.process.pid, signal.SIGUSR1)
                self.say("workload started")
                try:
                    self._wait_for_edges(edges, t_start, watch)
                except KeyboardInterrupt:
                    interrupted = True
                    self.say("interrupted: stopping every process, keeping the logs so far")
                lateness = list(replay.lateness_ms)
            replay_log.close()
        except KeyboardInterrupt:
            interrupted = True
            self.say("interrupted: tearing down")
        finally:
            with shielded(self.say):
                self._stop_children()
                net.stop()
        if watch is not None and t_start:
            watch(t_start, True)
        return EmulationResult(
            backend=self.backend,
            host_settings=net.host_settings,
            cpus=self.cpus,
            t_start=t_start,
            wall_s=time.monotonic() - started,
            logs=[c.log for c in self.children if c.log.exists()],
            edge_exit_codes={
                c.name: c.process.returncode
                for c in self.children
                if c.name not in self._cloud_side() and not c.name.startswith("watch-")
            },
            replay_lateness_ms_p99=_p99(lateness),
            watches_idle_cgroup=net.idle.made
            or not any(c.name.startswith("watch-") for c in self.children),
            interrupted=interrupted,
        )

    def _wait_for_edges(self, edges: list[Child], t_start: float, watch: Watcher | None) -> None:
        deadline = time.monotonic() + self.timeout_s
        while any(edge.process.poll() is None for edge in edges):
            if time.monotonic() > deadline:
                raise EmulationError(f"the workload did not finish within {self.timeout_s:.0f} s")
            if watch is not None:
                watch(t_start, False)
            time.sleep(1.0)

    def _sampled_processes(self, net: EmulatedNetwork) -> dict[str, int]:
        pids = {child.name: child.process.pid for child in self.children}
        for link in net.links:
            process = getattr(link.shaper, "process", None)
            if process is not None:
                pids[f"shaper:{link.name}"] = process.pid
        pids["orchestrator"] = os.getpid()
        return pids

    def _cloud_side(self) -> list[str]:
        """The processes that serve the edges, in the order they are stopped."""
        return ["draft-service", ROUTER, *self.scenario.target_hosts()]

    def _stop_children(self) -> None:
        """Edges first, then the router, then the targets (SIGTERM: each writes its
        ``process`` record)."""
        order = self._cloud_side()

        def stage(child: Child) -> int:
            return order.index(child.name) + 1 if child.name in order else 0

        for child in sorted(self.children, key=stage):
            stop_child(child.process, grace_s=15)
        if self._service_folder is not None:
            shutil.rmtree(self._service_folder, ignore_errors=True)


def _p99(values: list[float]) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]


def missing_tools() -> list[str]:
    """The programs an emulation needs that this machine lacks."""
    return [tool for tool in ("mnexec", "ip", "ethtool", "tc") if shutil.which(tool) is None]


def describe_host() -> dict[str, Any]:
    """What the results record about the machine the run used."""
    return {
        "cpus": os.cpu_count(),
        "affinity": sorted(os.sched_getaffinity(0)),
        "kernel": os.uname().release,
    }
