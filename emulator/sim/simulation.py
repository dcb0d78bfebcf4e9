"""Builds a simulated run from a scenario file and runs it: what ``scripts/simulate.py`` calls.

Inputs are the scenario (topology, traces, workload, seed), the model pairs' profiles and
the runtime's policy objects; the output is the runtime's event log. Nothing is read from
an emulation's results.
"""

from __future__ import annotations

import math
import random
import sys
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

from emulator.scenario import AcceptanceSpec, EdgeGroup, LinkSpec, Scenario
from emulator.sim.calibration import (
    PairProfile,
    probed_prefill_speed,
    probed_speeds,
    probed_unequal_rows,
    probed_verify_speeds,
    read_profile,
    watched,
)
from emulator.sim.cloud import RoutedCloud
from emulator.sim.cpu import CoreShare, SharedCore
from emulator.sim.device_profile import composed_profile
from emulator.sim.device_spec import is_device_spec
from emulator.sim.edge import EdgeSim, PromptModel
from emulator.sim.engine import Engine
from emulator.sim.links import LinkSchedule, SimLink, SimPath
from emulator.sim.machine_profiles import machine_profile
from emulator.sim.packet_links import PacketLink
from emulator.sim.requests import request_draws
from emulator.sim.server import TargetSim
from emulator.sim.window_policies import simulated_window_policy
from runtime.arrivals import poisson_offsets, random_stream
from runtime.cpuquota import PERIOD_MS, CpuQuota
from runtime.events import EventLog
from runtime.policies import BatchingPolicy, Fixed, WindowPolicy
from runtime.routing import SessionTable, make_router

PolicyFactory = Callable[[str], WindowPolicy]
PROGRESS_EVENTS = 100_000


@dataclass
class SimOptions:
    """How to simulate a scenario beyond what it says: its calibration, where to stop, what
    the emulated run it predicts measured. Changes to the scenario itself (edges, policy,
    seed, workload) are ``emulator.scenario.Overrides``, applied as it is loaded, as the
    emulator applies them."""

    profile: str | None = None  # one profile file for every pair (default: this machine's)
    until_s: float = math.inf  # stop the simulated clock here
    # host -> the CPUs an emulation pinned it to: edges pinned to one core share it
    cpu_plan: dict[str, str] | None = None
    # the ``speed`` events of an emulated run: the profile is scaled to each host's speed
    speed_probes: list[dict] | None = None
    # DSD-Sim's semantics, for comparison: DSD requests end after ceil(budget / γ) rounds
    fixed_rounds: bool = False


@dataclass
class SimResult:
    events: int
    rounds: int
    simulated_s: float
    edges: int
    requests_done: int
    requests_failed: int
    batches: int
    server_busy_s: float
    warnings: list[str] = field(default_factory=list)
    link_counters: dict[str, int] = field(default_factory=dict)


def _target_busy_changed(core: SharedCore, cloud: TargetSim | RoutedCloud, _: bool) -> None:
    core.set_target_busy(cloud.busy)


def _say(message: str) -> None:
    print(f"simulator: {message}", file=sys.stderr, flush=True)


def cpu_share(cpu: float, profiled_threads: int) -> float:
    """A host's share of the profiled speed: the profile ran ``profiled_threads`` threads on
    whole cores, a host with ``cpu`` cores' worth of quota gets that much of it (more cores
    than profiled are not assumed to help)."""
    return min(1.0, cpu / profiled_threads)


def quota_phase_ms(seed: int, host: str) -> float:
    """Where a host's quota periods begin (the kernel's timer, unrelated to the run); an
    emulated edge is given the same (``runtime.replay_draft``)."""
    return random_stream(seed, f"{host}-cpu").uniform(0.0, PERIOD_MS)


def fixed_rounds_gamma(policy: WindowPolicy, spec: str) -> int:
    """The γ an edge's requests are cut at under DSD-Sim's fixed rounds: its fixed one."""
    if not isinstance(policy, Fixed) or policy.gamma < 1:
        raise ValueError(f"fixed rounds need a fixed window (fixed:N), not {spec}")
    return policy.gamma


class Simulation:
    """One simulated run of a scenario; ``run`` writes the events to ``log``."""

    def __init__(
        self,
        scenario: Scenario,
        log: EventLog,
        options: SimOptions | None = None,
        policy_factory: PolicyFactory = simulated_window_policy,
    ) -> None:
        self.options = options = options or SimOptions()
        self.scenario = scenario
        self.log = log
        self.warnings: list[str] = []
        self.engine = Engine()
        self.cores: dict[str, SharedCore] = {}  # the edges' shared cores, by CPU
        self.target_cores: dict[str, SharedCore] = {}  # the replicas' shared cores, by CPU
        seed = scenario.seed
        workload = scenario.workload
        cloud = scenario.cloud
        self.requests_per_edge = requests = workload.requests_per_edge
        max_tokens = workload.max_new_tokens
        hosts = scenario.edge_hosts()
        # emulated edges compute nothing: they share no core and nothing slows them
        self._replayed = {host for host, group in hosts if group.replay}
        self._edge_names = [host for host, _ in hosts if host not in self._replayed]
        if not hosts:
            raise ValueError("a simulation needs at least one edge")
        acceptance = {group.draft: group.acceptance for _, group in hosts}
        drafts = sorted(set(acceptance) | set(filter(None, [cloud.draft])))
        self.profiles = profiles = {
            draft: self._profile(draft, acceptance.get(draft)) for draft in drafts
        }
        prompts = {
            draft: [
                PromptModel(
                    profile.prompt_tokens(text),
                    profile.acceptance_table(text),
                    profile.greedy_matches(text),
                    profile.greedy_matches_after_accept(text),
                )
                for text in workload.prompts
            ]
            for draft, profile in profiles.items()
        }
        target_profile = profiles[hosts[0][1].draft]
        self.speeds = probed_speeds(
            options.speed_probes or [],
            target_profile,
            {host: profiles[group.draft] for host, group in hosts if not group.replay},
            options.cpu_plan,
        )
        self._check_threads("cloud", cloud.threads, target_profile)
        probes = options.speed_probes or []
        verify_speeds = probed_verify_speeds(probes, target_profile, options.cpu_plan)
        prefill_speed = probed_prefill_speed(probes, target_profile, options.cpu_plan)
        unequal_rows = probed_unequal_rows(probes, options.cpu_plan)
        share = cpu_share(cloud.cpu, target_profile.threads)
        # each target's own profile where the pools run different models (their verify and
        # prefill times; the draft side is the edges')
        first_draft = hosts[0][1].draft
        self.pools = by_model = {cloud.model: target_profile} | {
            model: self._profile(first_draft, acceptance.get(first_draft), model)
            for model in sorted(set(cloud.target_models) - {cloud.model})
        }
        self.targets = [
            TargetSim(
                self.engine,
                by_model[model],
                BatchingPolicy(cloud.max_batch, cloud.max_wait_ms),
                self._target_cpu(host, share, seed, target_profile),
                self.speeds.get("cloud", 1.0),
                log,
                verify_speeds,
                prefill_speed,
                unequal_rows or target_profile.unequal_rows,
                draft_profile=profiles.get(cloud.draft) if cloud.draft else None,
                draft_speed=self._fused_draft_speed(hosts),
            )
            for host, model in zip(scenario.target_hosts(), cloud.target_models, strict=True)
        ]
        self.server: TargetSim | RoutedCloud = self.targets[0]
        if len(self.targets) > 1:
            router = make_router(cloud.router, seed)
            table = SessionTable(router, len(self.targets), cloud.router)
            self.server = RoutedCloud(
                self.engine, self.targets, table, log, self._fanout(hosts, seed)
            )
        self.links: list[SimLink | PacketLink] = []
        self._schedules: dict[tuple[int, str], LinkSchedule] = {}
        wan_up = wan_down = None
        if scenario.wan is not None:
            wan_up, wan_down = self._link_pair(
                scenario.wan, random_stream(seed, "wan"), seed, "wan", shared=True
            )
        self.edges: list[EdgeSim] = []
        for host, group in hosts:
            profile = profiles[group.draft]
            rng = random_stream(seed, host)  # the edge's acceptance draws and its access link
            up, down = self._link_pair(group.link, rng, seed, host)
            draws = request_draws(workload, requests, seed, host)
            policy = policy_factory(group.policy)
            edge = EdgeSim(
                name=host,
                engine=self.engine,
                profile=profile,
                policy=policy,
                cpu=self._edge_cpu(host, cpu_share(group.cpu, profile.threads), seed, profile),
                speed=group.speed if group.replay else self.speeds.get(host, 1.0),
                uplink=SimPath(self.engine, [up] + ([wan_up] if wan_up else [])),
                downlink=SimPath(self.engine, ([wan_down] if wan_down else []) + [down]),
                server=self.server,
                log=log,
                accept_rng=rng,
                prompts=prompts[group.draft],
                max_tokens=max_tokens,
                requests=requests,
                closed_loop=workload.arrival == "closed",
                mode=group.mode,
                answer_tokens=draws.answer_tokens,
                prompt_lengths=draws.prompt_tokens,
                think_ms=draws.think_ms,
                fixed_rounds_gamma=fixed_rounds_gamma(policy, group.policy)
                if options.fixed_rounds and group.mode == "dsd"
                else None,
            )
            self.edges.append(edge)
            self._schedule_arrivals(edge, requests, seed, draws.start_ms)
        self._couple_cpus(target_profile)
        if not workload.ignore_eos:
            self.warnings.append(
                "the workload does not ignore EOS: emulated requests may end early, while "
                "simulated ones always run to max_new_tokens"
            )
        for group in {group.name: group for _, group in hosts}.values():
            self._check_threads(f"edge group {group.name}", group.threads, profiles[group.draft])

    def _fanout(self, hosts: list[tuple[str, EdgeGroup]], seed: int) -> dict[str, list[int]]:
        """Per edge, the targets it may be routed to: ``fanout`` of them drawn for it (seeded
        by its name), or all where the scenario sets no fanout."""
        fanout, count = self.scenario.cloud.fanout, len(self.targets)
        if fanout is None:
            return {}
        return {
            host: sorted(random_stream(seed, f"{host}-fanout").sample(range(count), fanout))
            for host, _ in hosts
        }

    def _fused_draft_speed(self, hosts: list[tuple[str, EdgeGroup]]) -> float:
        """A fused session's drafts run on the cloud's CPU at the draft model's speed: the
        mean of what the fused edges' own draft probes read (1 where none probed)."""
        fused = [self.speeds.get(host, 1.0) for host, group in hosts if group.mode == "fused"]
        return sum(fused) / len(fused) if fused else 1.0

    def _edge_cpu(
        self, host: str, share: float, seed: int, profile: PairProfile
    ) -> CpuQuota | CoreShare:
        """A quota of its own, or a quota on a core it shares with other edges where the
        emulation this simulates pinned several edges to one core (taking turns there at the
        cost its draft's profile measured)."""
        plan = self.options.cpu_plan or {}
        core = None if host in self._replayed else plan.get(host)
        if core is None or sum(1 for h in self._edge_names if plan.get(h) == core) < 2:
            return CpuQuota(share, quota_phase_ms(seed, host))
        if core not in self.cores:
            self.cores[core] = SharedCore(self.engine, sharing=profile.sharing_ratio)
        return self.cores[core].host(share, quota_phase_ms(seed, host))

    def _target_cpu(
        self, host: str, share: float, seed: int, profile: PairProfile
    ) -> CpuQuota | CoreShare:
        """A quota of its own, or a quota on a core it shares with the replicas the
        emulation this simulates pinned to the same CPU (taking turns there at the cost the
        target's profile measured)."""
        plan = self.options.cpu_plan or {}
        core = plan.get(host)
        hosts = self.scenario.target_hosts()
        if core is None or sum(1 for h in hosts if plan.get(h) == core) < 2:
            return CpuQuota(share, quota_phase_ms(seed, host))
        if core not in self.target_cores:
            self.target_cores[core] = SharedCore(self.engine, sharing=profile.target_sharing_ratio)
        return self.target_cores[core].host(share, quota_phase_ms(seed, host))

    def _couple_cpus(self, target: PairProfile) -> None:
        """Where the run this simulates pinned the target and the edges to different CPUs
        of one machine, each computes slower while the other does, by the profile's
        interference ratios, unless a speed watch probed its speed beside the other
        already; edges of a simulation of their own are devices of their own, and emulated
        edges (``draft: replay``) compute nothing: they slow nothing, and nothing slows them."""
        plan, probes = self.options.cpu_plan, self.options.speed_probes or []
        computing = [edge for edge in self.edges if edge.name not in self._replayed]
        if (
            not plan
            or not target.interference
            or not computing
            or plan.get("cloud") in {plan.get(edge.name) for edge in computing}
        ):
            return
        if not watched(probes, "cloud", plan):
            cloud = self.server
            for server in self.targets:
                server.beside = dict(target.interference.get("target", {}))
                server.edges_computing = lambda: any(edge.computing() for edge in computing)
                # a shared core hears whether any target computes, not the last to change
                server.watchers.extend(
                    partial(_target_busy_changed, core, cloud) for core in self.cores.values()
                )
        for edge in computing:
            if not watched(probes, edge.name, plan):
                edge.beside = dict(edge.profile.interference.get("draft", {}))

    def _profile(
        self, draft: str, acceptance: AcceptanceSpec | None, target: str | None = None
    ) -> PairProfile:
        """The pair's profile (the cloud's first model's, else ``target``'s): the one file
        given, this machine's, or put together where a side runs on a device or the
        scenario gives the acceptance (``device_profile``)."""
        if self.options.profile:
            return read_profile(self.options.profile)
        cloud = self.scenario.cloud
        target = target or cloud.model
        if acceptance is None and not any(map(is_device_spec, (target, draft))):
            return machine_profile(target, draft, cloud.threads, say=_say)
        return composed_profile(
            target,
            draft,
            acceptance,
            lambda target, draft: machine_profile(target, draft, cloud.threads, say=_say),
        )

    def calibration(self) -> dict[str, dict]:
        """Per draft model, the profile this simulation was calibrated from, and per further
        model the targets run, the profile its targets were priced from (for results)."""
        records = {draft: profile.record() for draft, profile in self.profiles.items()}
        extra = {f"targets {m}": p for m, p in self.pools.items() if m != self.scenario.cloud.model}
        return records | {name: profile.record() for name, profile in extra.items()}

    def _check_threads(self, where: str, threads: int, profile: PairProfile) -> None:
        if threads != profile.threads:
            self.warnings.append(
                f"{where} runs {threads} thread(s) but {profile.source} was measured with "
                f"{profile.threads}: its times may not apply (re-profile with --threads {threads})"
            )

    def _link_pair(
        self, spec: LinkSpec, rng: random.Random, seed: int, name: str, shared: bool = False
    ) -> tuple[SimLink | PacketLink, SimLink | PacketLink]:
        """A link's two directions: analytic (drawing from ``rng``), or followed packet by
        packet where its queue, stages or schedule need it (drawing from streams of their
        own, so that the edge's acceptance draws stay those of the analytic case)."""
        links: list[SimLink | PacketLink] = []
        for direction in ("up", "down"):
            schedule = self._schedule(spec, direction)
            if spec.per_packet:
                own = random_stream(seed, f"{name}:{direction}")
                links.append(PacketLink(self.engine, spec, direction, schedule, own))
            else:
                links.append(SimLink(schedule, spec.queue_packets, rng, shared))
        self.links.extend(links)
        return links[0], links[1]

    def _schedule(self, spec: LinkSpec, direction: str) -> LinkSchedule:
        key = (id(spec.trace), direction)
        if key not in self._schedules:
            self._schedules[key] = LinkSchedule(spec.trace, direction)
        return self._schedules[key]

    def _schedule_arrivals(self, edge: EdgeSim, requests: int, seed: int, start_ms: float) -> None:
        workload = self.scenario.workload
        if workload.arrival == "closed":
            self.engine.at(start_ms, edge.arrival, 0)
            return
        assert workload.poisson_per_s is not None  # the scenario's only other arrival
        offsets = poisson_offsets(workload.poisson_per_s, requests, seed, edge.name)
        for index, offset in enumerate(offsets):
            self.engine.at(offset * 1000.0, edge.arrival, index)

    def run(self, progress: Callable[[int, int], None] | None = None) -> SimResult:
        """Run to the end; ``progress(requests finished, requests in all)`` is called now
        and then (every ``PROGRESS_EVENTS`` events)."""
        until = self.options.until_s * 1000.0
        total = self.requests_per_edge * len(self.edges)
        while self.engine.run(until, PROGRESS_EVENTS if progress else math.inf):
            if progress:
                progress(sum(edge.finished for edge in self.edges), total)
        failed = sum(
            edge.abandon("unfinished when the simulation ended (a link outage or the time limit)")
            for edge in self.edges
        )
        counters: Counter[str] = Counter()
        for link in self.links:
            counters.update(link.counters)
            counters["messages"] += link.sent
            counters["wire_bytes"] += link.wire_bytes
        return SimResult(
            events=self.engine.events,
            rounds=sum(edge.rounds for edge in self.edges),
            simulated_s=self.engine.now / 1000.0,
            edges=len(self.edges),
            requests_done=sum(edge.finished for edge in self.edges),
            requests_failed=failed,
            batches=sum(server.batches for server in self.targets),
            server_busy_s=sum(server.busy_ms for server in self.targets) / 1000.0,
            warnings=self.warnings,
            link_counters=dict(counters),
        )
