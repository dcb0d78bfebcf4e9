"""Scenario files: one YAML file describes a run for the emulator and the simulator alike.

    name: default
    seed: 1
    shaper: null                     # netem | delayline | null = probe
    cloud: {model: smollm2, cpu: 1.0, threads: 1, batching: {max_batch: 8, max_wait_ms: 20},
            targets: 1,              # replicas of the target, each with cpu and threads
            router: jsq}             # round-robin | jsq | p2c: which replica a session gets
    edges:
      - name: lte                    # group name; hosts lte1, lte2, ...
        count: 1
        draft: int8                  # or replay[:SPEC]: emulated edges, no model (below)
        cpu: 0.5                     # share of ONE core per edge host
        threads: 1
        policy: fixed:4
        mode: dsd                    # dsd | cloud (the target decodes and streams) |
                                     # fused (draft and target in the cloud) | edge-only
        acceptance: {alpha: 0.8, source: "..."}  # simulator: the pair's, where not profiled here
        link:                        # the access link
          trace: ../traces/lte-like.csv          # canonical CSV or FORMAT:PATH
          # or up: FORMAT:PATH and down: FORMAT:PATH (rates), rtt: FORMAT:PATH (delays)
          # or constant: {rate_mbps: 20, delay_ms: 10, jitter_ms: 0, loss_pct: 0}
          queue_packets: 100         # a drop-tail queue of 100 packets, or Mahimahi's queues:
          # queue: {kind: codel, target_ms: 5, interval_ms: 100, packets: 1000}  (infinite,
          #        droptail, drophead, codel, pie; or {up: {...}, down: {...}})
          packet_exact: false        # mahimahi traces: replay each delivery opportunity
          once: false                # play the trace once, then deliver nothing
          log: false                 # Mahimahi-format packet logs in the results folder
          # or a Mahimahi command line as run: mahimahi: "mm-delay 20 mm-link UP DOWN ...",
          # or its parts: mm_link: "UP DOWN [options]", mm_delay: MS,
          #               mm_loss: {uplink: RATE, downlink: RATE}
    wan: {constant: {rate_mbps: 1000, delay_ms: 2}}   # optional, shared by all edges
    workload: {requests_per_edge: 2, max_new_tokens: 48, arrival: closed, prompts: default,
               ignore_eos: true}   # every request runs to max_new_tokens, as the simulator
    slo: {ttft_ms: 300, tpot_ms: 35}  # optional: goodput's objectives (the capacity planner's)

An edge group whose ``draft`` is ``replay`` (or ``replay:SPEC``) is emulated edges: each
process holds no model and replays the draft's recorded tokens, spending the profile's draft
times on its CPU quota (``runtime.replay_draft``), with ``speed: X`` the device's draft time
over the profile's (default 1). Everything else about it is real: its namespace, its link,
the protocol, its window policy and the target's work.

For the simulator alone, a model may name a device this machine cannot run
(``emulator.sim.device_spec``): ``cloud.model: llama-2-70b@h100:tp4`` or a draft
``llama-2-7b@a40`` (VIDUR's GPU tables), or ``llama-3.2-1b@25ms`` (a device the user times).
Such a pair was never profiled here, so its edge group gives its ``acceptance``: a constant
``alpha``, ``first`` and ``decay`` (position i accepted with first x decay^i, given the
ones before were), or a ``per_position`` list; with the figure's ``source``. The simulator
also takes pools of different target models (``cloud.targets: [{model: M, count: N}, ...]``),
a ``cloud.fanout`` (the targets each edge may be routed to, drawn per edge), and a workload
drawn per request: ``answer_tokens: {mean, std, min, max}`` (normal, clipped),
``prompt_tokens: {min, max}`` (uniform) and ``arrival: {think_time_ms: {mean, cv, min}}``
(a closed loop pausing a lognormal think time before each request).

Relative paths are relative to the scenario file. Everything is validated on load, before
any namespace exists; errors name the file and the key.
"""

from __future__ import annotations

import copy
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from emulator.link.mahimahi_cli import MahimahiCommandError, parse_command, split_form
from emulator.link.pipe import PipeLayout
from emulator.link.queues import QueueSpec, QueueSpecError
from emulator.sim.device_spec import is_device_spec, parse_device_spec
from emulator.sim.window_policies import ORACLE, simulated_window_policy
from emulator.traces.importers import FORMATS, load_trace
from emulator.traces.importers.mahimahi import mahimahi_link
from emulator.traces.linktrace import DIRECTIONS, LinkTrace, TraceError, combine
from runtime.model_names import DEFAULT_DRAFT, REPLAY, replayed_draft
from runtime.prompts import load_prompts
from runtime.protocol import EDGE_MODES
from runtime.routing import make_router

MODE_HELP = (
    "every edge's mode: dsd, cloud (the target decodes and streams), fused (draft and "
    "target in the cloud) or edge-only (the draft alone); default: the scenario's"
)


CLOUD = "cloud"  # the host edges send to: the target, or the router of several


class ScenarioError(ValueError):
    """A scenario file is invalid; the message names the file and the key."""


@dataclass
class LinkSpec:
    """One link: its trace and, per direction, how it is built (stages, queue, once), the
    Mahimahi-format packet logs asked for, and the Mahimahi command it came from."""

    trace: LinkTrace
    description: str
    queue_packets: int = 100
    packet_exact: bool = False
    layouts: dict[str, PipeLayout] = field(default_factory=dict)  # empty: the default
    logs: dict[str, str] = field(default_factory=dict)  # direction -> log file name
    once: bool = False
    command_line: str = ""
    trace_files: dict[str, str] = field(default_factory=dict)  # direction -> as given

    def layout(self, direction: str) -> PipeLayout:
        default = PipeLayout(queue=QueueSpec("droptail", packets=self.queue_packets))
        return self.layouts.get(direction, default)

    @property
    def per_packet(self) -> bool:
        """Whether the simulator follows this link packet by packet: its queue, stages or
        schedule do what the analytic drop-tail model does not."""
        layouts = [self.layout(d) for d in DIRECTIONS]
        analytic = all(x.plain and x.queue.packets == self.queue_packets for x in layouts)
        return self.packet_exact or self.once or not analytic


@dataclass(frozen=True)
class Slo:
    """Latency objectives a request meets to count towards goodput."""

    ttft_ms: float = 3000.0
    tpot_ms: float = 400.0


@dataclass(frozen=True)
class AcceptanceSpec:
    """A pair's per-position acceptance as the scenario gives it, with where it comes from:
    position i is accepted with ``curve[i]`` given positions 0..i-1 were (the last value
    past the curve's end)."""

    curve: tuple[float, ...]
    source: str

    def per_position(self, positions: int = 16) -> list[float]:
        """The first ``positions`` positions' acceptance."""
        curve = list(self.curve[:positions])
        return curve + [curve[-1]] * (positions - len(curve))


@dataclass
class EdgeGroup:
    name: str
    count: int
    draft: str
    cpu: float
    threads: int
    policy: str
    link: LinkSpec
    mode: str = "dsd"
    replay: bool = False  # emulated edges: the draft's tokens and times replayed
    speed: float = 1.0  # an emulated edge's draft time over the profile's
    acceptance: AcceptanceSpec | None = None  # the simulator's, where the scenario gives it

    @property
    def draft_spec(self) -> str:
        """The draft as the edge process is given it."""
        return f"{REPLAY}:{self.draft}" if self.replay else self.draft

    def host_names(self) -> list[str]:
        return [f"{self.name}{i + 1}" for i in range(self.count)]


@dataclass
class CloudSpec:
    model: str = "smollm2"
    draft: str | None = None
    cpu: float = 1.0
    threads: int = 1
    max_batch: int = 8
    max_wait_ms: float = 20.0
    device: str = "cpu"
    dtype: str = "float32"
    targets: int = 1  # replicas, each with ``cpu`` and ``threads``, behind ``router``
    router: str = "jsq"
    # each target's model, in host order (simulator: pools of different models on devices)
    target_models: list[str] = field(default_factory=list)
    fanout: int | None = None  # simulator: the targets each edge may be routed to

    def __post_init__(self) -> None:
        self.target_models = self.target_models or [self.model] * self.targets


@dataclass(frozen=True)
class AnswerTokens:
    """Each request's token budget drawn from a normal distribution, rounded and clipped."""

    mean: float
    std: float
    low: int
    high: int


@dataclass(frozen=True)
class ThinkTime:
    """A closed loop's pause between an answer and the next request: lognormal with this
    mean and coefficient of variation, at least ``low_ms``."""

    mean_ms: float
    cv: float
    low_ms: float = 0.0


@dataclass
class Workload:
    requests_per_edge: int = 2
    max_new_tokens: int = 48
    arrival: str = "closed"
    poisson_per_s: float | None = None
    prompts: list[str] = field(default_factory=list)
    ignore_eos: bool = True
    # the simulator's draws per request (None: every request alike, as the runtime runs)
    answer_tokens: AnswerTokens | None = None
    prompt_tokens: tuple[int, int] | None = None  # uniform between the two, inclusive
    think_time: ThinkTime | None = None  # closed loop only

    def drawn(self) -> bool:
        """Whether requests are drawn per request (which only the simulator does)."""
        return any((self.answer_tokens, self.prompt_tokens, self.think_time))


@dataclass
class Scenario:
    name: str
    path: Path
    seed: int
    shaper: str | None
    cloud: CloudSpec
    edges: list[EdgeGroup]
    wan: LinkSpec | None
    workload: Workload
    raw: dict[str, Any]
    slo: Slo | None = None  # the scenario's goodput objectives, where it gives them

    def edge_hosts(self) -> list[tuple[str, EdgeGroup]]:
        return [(host, group) for group in self.edges for host in group.host_names()]

    def target_hosts(self) -> list[str]:
        return target_hosts(self.cloud.targets)

    def simulator_only(self) -> str | None:
        """Why only the simulator can run this scenario (a model on a device this machine
        cannot run, an acceptance given rather than measured, pools of different target
        models, a fanout, a workload drawn per request, the clairvoyant policy), or None."""
        models = [*self.cloud.target_models, self.cloud.draft or ""] + [g.draft for g in self.edges]
        on_device = [m for m in models if is_device_spec(m)]
        if on_device:
            return f"{on_device[0]} runs on a device this machine cannot run"
        given = [g.name for g in self.edges if g.acceptance is not None]
        if given:
            return f"edge group {given[0]} gives its acceptance instead of running its draft"
        if set(self.cloud.target_models) != {self.cloud.model}:
            return "its targets run different models"
        if self.cloud.fanout is not None:
            return "each edge is routed among a fanout of the targets"
        if self.workload.drawn():
            return "its workload draws answer lengths, prompt lengths or think times"
        crowded = [g for g in self.edges if g.count > MAX_EMULATED_EDGES]
        if crowded:
            return (
                f"edge group {crowded[0].name} has {crowded[0].count} edges; the emulator "
                f"places at most {MAX_EMULATED_EDGES} per group"
            )
        if any(group.policy == ORACLE for group in self.edges):
            return "the oracle window policy knows each round's acceptance before it is drawn"
        return None


def target_hosts(count: int) -> list[str]:
    """Where ``count`` target replicas run: the cloud host itself when there is one; else
    hosts of their own behind the cloud host, which runs the router."""
    return [CLOUD] if count == 1 else [f"target{i + 1}" for i in range(count)]


class _Reader:
    """Typed access to one mapping of the YAML, with errors that name the key path."""

    def __init__(self, data: Any, where: str, file: Path) -> None:
        if not isinstance(data, dict):
            raise ScenarioError(f"{file}: {where or 'the file'} must be a mapping")
        self.data, self.where, self.file = data, where, file
        self.used: set[str] = set()

    def key(self, name: str) -> str:
        return f"{self.where}.{name}" if self.where else name

    def fail(self, name: str, message: str) -> ScenarioError:
        return ScenarioError(f"{self.file}: {self.key(name)}: {message}")

    def get(self, name: str, kind: type | tuple[type, ...], default: Any = ...) -> Any:
        self.used.add(name)
        if name not in self.data or self.data[name] is None:
            if default is ...:
                raise self.fail(name, "is required")
            return default
        value = self.data[name]
        if isinstance(value, bool) and bool not in (kind if isinstance(kind, tuple) else (kind,)):
            raise self.fail(name, f"must be {_kind_name(kind)}, not a boolean")
        if kind is float and isinstance(value, int):
            value = float(value)
        if not isinstance(value, kind):
            raise self.fail(name, f"must be {_kind_name(kind)}, got {value!r}")
        return value

    def number(
        self,
        name: str,
        default: Any = ...,
        low: float = -math.inf,
        high: float = math.inf,
        integer: bool = False,
    ) -> Any:
        value = self.get(name, int if integer else (int, float), default)
        if value is not None and not low <= value <= high:
            raise self.fail(name, f"must be in [{low}, {high}], got {value}")
        return value

    def child(self, name: str, default: Any = ...) -> _Reader | None:
        value = self.get(name, dict, default)
        return None if value is None else _Reader(value, self.key(name), self.file)

    def section(self, name: str) -> _Reader:
        """An optional mapping, read as empty where it is absent."""
        return _Reader(self.get(name, dict, {}), self.key(name), self.file)

    def finish(self) -> None:
        unknown = sorted(set(self.data) - self.used)
        if unknown:
            known = ", ".join(sorted(self.used))
            raise self.fail(unknown[0], f"unknown key (known here: {known})")


def _kind_name(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    names = {
        int: "an integer",
        float: "a number",
        str: "a string",
        dict: "a mapping",
        list: "a list",
        bool: "true or false",
    }
    return " or ".join(names.get(k, k.__name__) for k in kinds)


def _resolve(spec: str, base: Path) -> str:
    """FORMAT:PATH or PATH, with a relative path taken from the scenario's folder."""
    fmt, sep, rest = spec.partition(":")
    if sep and fmt in FORMATS:
        return f"{fmt}:{base / rest}"
    return str(base / spec)


def _constant_trace(reader: _Reader) -> LinkTrace:
    values = {
        q: reader.number(q, default, 0, high)
        for q, default, high in (
            ("rate_mbps", None, 1e6),
            ("delay_ms", 0.0, 1e5),
            ("jitter_ms", 0.0, 1e5),
            ("loss_pct", 0.0, 100.0),
        )
    }
    reader.finish()
    series = {q: np.array([np.nan if v is None else float(v)]) for q, v in values.items()}
    return LinkTrace(
        np.array([0.0]),
        3600.0,
        series,
        {k: v.copy() for k, v in series.items()},
        {"source": "constant", "derived": str(values)},
    )


def _link(reader: _Reader, base: Path) -> LinkSpec:
    command, mm_link = reader.get("mahimahi", str, None), reader.get("mm_link", str, None)
    if command is not None or mm_link is not None:
        return _mahimahi_link(reader, base, command, mm_link)
    queue_packets = reader.number("queue_packets", None, 1, 100_000, integer=True)
    queue_reader = reader.child("queue", None)
    if queue_packets is not None and queue_reader is not None:
        raise reader.fail("queue", "give queue or queue_packets, not both")
    queue_packets = queue_packets or 100
    queues = _queues(queue_reader) if queue_reader is not None else {}
    packet_exact = reader.get("packet_exact", bool, False)
    once = reader.get("once", bool, False)
    logs = {d: f"{d}link.log" for d in DIRECTIONS} if reader.get("log", bool, False) else {}
    sources: dict[str, str] = {}
    try:
        constant = reader.child("constant", None)
        if constant is not None:
            trace, text = _constant_trace(constant), "constant"
        else:
            single = reader.get("trace", str, None)
            up, down = reader.get("up", str, None), reader.get("down", str, None)
            rtt = reader.get("rtt", str, None)
            if single and (up or down):
                raise reader.fail("trace", "give either trace or up/down, not both")
            if single:
                trace, text = load_trace(_resolve(single, base)), single
                sources = {"up": single, "down": single}
            elif up and down:
                trace = _merge_directions(
                    _direction_trace(up, "up", base), _direction_trace(down, "down", base)
                )
                text, sources = f"up {up}, down {down}", {"up": up, "down": down}
            else:
                raise reader.fail("trace", "a link needs trace, up and down, or constant")
            if rtt:
                trace = combine(trace, load_trace(_resolve(rtt, base)))
                text += f", rtt {rtt}"
    except TraceError as exc:
        raise reader.fail("trace", str(exc)) from exc
    reader.finish()
    rates = np.concatenate([trace.up["rate_mbps"], trace.down["rate_mbps"]])
    if np.any(rates[~np.isnan(rates)] < 0):
        raise reader.fail("trace", "negative rate")
    if packet_exact:
        _check_opportunities(reader, trace, sources)
    layouts = {
        d: PipeLayout(
            _traced_stages(trace, d),
            queues.get(d, QueueSpec("droptail", packets=queue_packets)),
            once,
        )
        for d in DIRECTIONS
    }
    return LinkSpec(trace, text, queue_packets, packet_exact, layouts, logs, once, "", sources)


def _traced_stages(trace: LinkTrace, direction: str) -> tuple[tuple[str, float | None], ...]:
    """Loss, the wire, delay: the first and last only where the trace gives them."""
    series = getattr(trace, direction)
    lossy = not np.isnan(series["loss_pct"]).all()
    delayed = not (np.isnan(series["delay_ms"]).all() and np.isnan(series["jitter_ms"]).all())
    return (
        *((("loss", None),) if lossy else ()),
        ("link", None),
        *((("delay", None),) if delayed else ()),
    )


def _direction_trace(spec: str, direction: str, base: Path) -> LinkTrace:
    """One direction's trace; a Mahimahi file is that direction's delivery opportunities,
    whatever its name (Mahimahi users name them freely)."""
    fmt, sep, path = spec.partition(":")
    if sep and fmt == "mahimahi":
        return mahimahi_link({direction: base / path})
    return load_trace(_resolve(spec, base))


def _check_opportunities(reader: _Reader, trace: LinkTrace, sources: dict[str, str]) -> None:
    """Packet-exact replay needs a direction's delivery opportunities wherever it has rates."""
    if not trace.deliveries_ms:
        raise reader.fail("packet_exact", "needs a mahimahi trace (delivery opportunities)")
    for direction in DIRECTIONS:
        rated = not np.isnan(getattr(trace, direction)["rate_mbps"]).all()
        if rated and direction not in trace.deliveries_ms:
            name = "uplink" if direction == "up" else "downlink"
            raise reader.fail(
                "packet_exact",
                f"the {name} ({sources.get(direction, 'its trace')}) has no delivery "
                "opportunities: give it a mahimahi trace too",
            )


def _queues(reader: _Reader) -> dict[str, QueueSpec]:
    """``queue: {kind: ..., ...}`` for both directions, or ``{up: {...}, down: {...}}``."""
    if "up" in reader.data or "down" in reader.data:
        queues = {d: _queue(reader.child(d)) for d in DIRECTIONS}  # type: ignore[arg-type]
        reader.finish()
        return queues
    queue = _queue(reader)
    return {d: queue for d in DIRECTIONS}


def _queue(reader: _Reader) -> QueueSpec:
    kind = reader.get("kind", str)
    values: dict[str, Any] = {"packets": None}
    for name in ("packets", "bytes"):
        values[name] = reader.number(name, None, 1, 1e9, integer=True)
    for name in ("target_ms", "interval_ms", "qdelay_ref_ms", "max_burst_ms"):
        value = reader.number(name, None, 0, 1e6)
        if value is not None:
            values[name] = float(value)
    reader.finish()
    try:
        return QueueSpec(kind, **values)
    except QueueSpecError as exc:
        raise reader.fail("kind", str(exc)) from exc


def _mahimahi_link(
    reader: _Reader, base: Path, command: str | None, mm_link: str | None
) -> LinkSpec:
    """A link from a Mahimahi command line (``mahimahi:``) or its split keys (``mm_link``,
    ``mm_delay``, ``mm_loss``)."""
    key = "mahimahi" if command is not None else "mm_link"
    if command is not None and mm_link is not None:
        raise reader.fail("mahimahi", "give mahimahi (the whole command) or mm_link, not both")
    if mm_link is not None:
        delay = reader.number("mm_delay", None, 0, 1e6)
        losses = reader.child("mm_loss", None)
        rates = {}
        if losses is not None:
            for name in ("uplink", "downlink"):
                rate = losses.number(name, None, 0, 1)
                if rate is not None:
                    rates[name] = float(rate)
            losses.finish()
        command = split_form(mm_link, delay, rates)
    assert command is not None
    try:
        parsed = parse_command(command)
        trace = mahimahi_link({d: base / parsed.traces[d] for d in DIRECTIONS})
    except (MahimahiCommandError, TraceError) as exc:
        raise reader.fail(key, str(exc)) from exc
    reader.finish()
    return LinkSpec(
        trace,
        f"mahimahi: {command}",
        packet_exact=True,
        layouts=parsed.layouts,
        logs=parsed.logs,
        once=parsed.once,
        command_line=command,
        trace_files=parsed.traces,
    )


def _merge_directions(up: LinkTrace, down: LinkTrace) -> LinkTrace:
    """Uplink values from one trace, downlink from another (each taken in its own direction,
    or from the other one where a one-direction trace only has that)."""

    def pick(trace: LinkTrace, direction: str) -> dict[str, np.ndarray]:
        series = getattr(trace, direction)
        if np.isnan(series["rate_mbps"]).all():
            series = trace.down if direction == "up" else trace.up
        return series

    duration = max(up.duration_s, down.duration_s)
    deliveries = {
        d: t.deliveries_ms[d] for d, t in (("up", up), ("down", down)) if d in t.deliveries_ms
    }
    up, down = up.loop(duration), down.loop(duration)
    times = np.union1d(up.times, down.times)
    iu = np.searchsorted(up.times, times, side="right") - 1
    idn = np.searchsorted(down.times, times, side="right") - 1
    up_series = {q: v[iu] for q, v in pick(up, "up").items()}
    down_series = {q: v[idn] for q, v in pick(down, "down").items()}
    meta = {
        "source": f"{up.meta.get('source')} / {down.meta.get('source')}",
        "file": f"{up.meta.get('file')} / {down.meta.get('file')}",
        "derived": "uplink and downlink from separate traces",
    }
    return LinkTrace(times, duration, up_series, down_series, meta, deliveries)


@dataclass
class Overrides:
    """Command-line changes to a scenario, applied before it is validated."""

    edges: int | None = None  # edge hosts in all, spread over the groups in turn
    draft: str | None = None  # every group's; "replay" replays each group's own draft
    policy: str | None = None
    mode: str | None = None  # every group's
    requests_per_edge: int | None = None
    max_new_tokens: int | None = None
    seed: int | None = None
    shaper: str | None = None
    traces: dict[str, str] = field(default_factory=dict)  # "GROUP[.up|.down|.rtt]" -> spec


TRACE_KEYS = ("trace", "up", "down", "rtt")
MAX_EMULATED_EDGES = 64  # per group: Mininet hosts on this machine
MAX_SIMULATED_EDGES = 100_000


def spread_edges(total: int, groups: int) -> list[int]:
    """Edge hosts per group when ``total`` are spread over ``groups`` in turn (the first
    groups get one more; with fewer edges than groups, the last groups get none)."""
    return [total // groups + (i < total % groups) for i in range(groups)]


def absolute_traces(raw: dict[str, Any], folder: Path) -> dict[str, Any]:
    """A copy of a parsed scenario whose relative trace paths are made absolute from
    ``folder`` (the scenario's own), so that it can be written anywhere."""
    raw = copy.deepcopy(raw)
    links = [group.get("link") for group in raw.get("edges", []) if isinstance(group, dict)]
    for link in [*links, raw.get("wan")]:
        if not isinstance(link, dict):
            continue
        for key in TRACE_KEYS:
            spec = link.get(key)
            if isinstance(spec, str):
                fmt, sep, rest = spec.partition(":")
                if sep and fmt in FORMATS:
                    link[key] = f"{fmt}:{(folder / rest).resolve()}"
                else:
                    link[key] = str((folder / spec).resolve())
    return raw


def _absolute(spec: str) -> str:
    """A trace spec typed on the command line: a relative path is from the working folder."""
    fmt, sep, rest = spec.partition(":")
    if sep and fmt in FORMATS:
        return f"{fmt}:{Path(rest).resolve()}"
    return str(Path(spec).resolve())


def apply_overrides(raw: Any, overrides: Overrides, path: Path) -> Any:
    """A copy of the parsed YAML with the overrides in; errors name the option."""
    if not isinstance(raw, dict) or not isinstance(raw.get("edges"), list):
        return raw
    raw = copy.deepcopy(raw)
    groups = [g for g in raw["edges"] if isinstance(g, dict)]
    if overrides.edges is not None:
        counts = spread_edges(overrides.edges, len(groups))
        groups = raw["edges"] = [g for g, n in zip(groups, counts, strict=True) if n]
        for group, count in zip(groups, counts, strict=False):
            group["count"] = count
    for group in groups:
        if overrides.draft == REPLAY:
            own = str(group.get("draft", DEFAULT_DRAFT))
            group["draft"] = own if replayed_draft(own) else f"{REPLAY}:{own}"
        elif overrides.draft is not None:
            group["draft"] = overrides.draft
        if overrides.policy is not None:
            group["policy"] = overrides.policy
        if overrides.mode is not None:
            group["mode"] = overrides.mode
    workload = raw.setdefault("workload", {})
    if isinstance(workload, dict):
        if overrides.requests_per_edge is not None:
            workload["requests_per_edge"] = overrides.requests_per_edge
        if overrides.max_new_tokens is not None:
            workload["max_new_tokens"] = overrides.max_new_tokens
    if overrides.seed is not None:
        raw["seed"] = overrides.seed
    if overrides.shaper is not None:
        raw["shaper"] = overrides.shaper
    links = {g.get("name"): g for g in groups}
    for target, spec in overrides.traces.items():
        name, _, key = target.partition(".")
        key = key or "trace"
        if key not in TRACE_KEYS:
            raise ScenarioError(f"--trace {target}: the part after '.' must be up, down or rtt")
        if name == "wan":
            link = raw.setdefault("wan", {})
        elif name in links:
            link = links[name].setdefault("link", {})
        else:
            known = ", ".join([*map(str, links), "wan"])
            raise ScenarioError(f"--trace {target}: {path} has no link {name!r} (known: {known})")
        replaced = {"trace": ("up", "down"), "up": ("trace",), "down": ("trace",)}
        for old in replaced.get(key, ()):
            link.pop(old, None)
        if key != "rtt":
            link.pop("constant", None)
        link[key] = _absolute(spec)
    return raw


def load_scenario(path: str | Path, overrides: Overrides | None = None) -> Scenario:
    """Parse and validate a scenario file (traces are loaded and checked too)."""
    path = Path(path)
    if not path.is_file():
        raise ScenarioError(f"{path}: no such scenario file")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ScenarioError(f"{path}: not valid YAML: {str(exc).splitlines()[0]}") from exc
    if overrides is not None:
        raw = apply_overrides(raw, overrides, path)
    top = _Reader(raw, "", path)
    base = path.parent
    name = top.get("name", str, path.stem)
    seed = top.number("seed", 0, 0, 2**31, integer=True)
    shaper = top.get("shaper", str, None)
    if shaper not in (None, "netem", "delayline"):
        raise top.fail("shaper", "must be netem, delayline or empty (probe)")
    cloud = _cloud(top.section("cloud"))
    edges_raw = top.get("edges", list)
    if not edges_raw:
        raise top.fail("edges", "needs at least one edge group")
    edges = [_edge(_Reader(item, f"edges[{i}]", path), base) for i, item in enumerate(edges_raw)]
    names = [host for group in edges for host in group.host_names()]
    if len(set(names)) != len(names):
        raise top.fail("edges", "edge group names collide")
    given: dict[str, AcceptanceSpec | None] = {}
    for group in edges:
        if given.setdefault(group.draft, group.acceptance) != group.acceptance:
            raise top.fail("edges", f"groups drafting {group.draft} give different acceptance")
    taken = sorted(set(names) & {CLOUD, *target_hosts(cloud.targets)})
    if taken:
        raise top.fail("edges", f"edge host {taken[0]} would take a cloud host's name")
    wan_reader = top.child("wan", None)
    wan = _link(wan_reader, base) if wan_reader is not None else None
    workload = _workload(top.section("workload"), base)
    slo_reader = top.child("slo", None)
    slo = None
    if slo_reader is not None:
        slo = Slo(
            slo_reader.number("ttft_ms", ..., 1e-3, 1e7),
            slo_reader.number("tpot_ms", ..., 1e-3, 1e7),
        )
        slo_reader.finish()
    top.finish()
    _give_fused_its_draft(cloud, edges, top)
    return Scenario(name, path, seed, shaper, cloud, edges, wan, workload, raw, slo)


def _cloud(reader: _Reader) -> CloudSpec:
    cores = os.cpu_count() or 1
    batching = reader.section("batching")
    model = reader.get("model", str, "smollm2")
    targets, target_models = _target_pools(reader, model)
    spec = CloudSpec(
        model=target_models[0],
        draft=reader.get("draft", str, None),
        cpu=reader.number("cpu", 1.0, 0.01, float(cores)),
        threads=reader.number("threads", 1, 1, 256, integer=True),
        max_batch=batching.number("max_batch", 8, 1, 1024, integer=True),
        max_wait_ms=batching.number("max_wait_ms", 20.0, 0, 60_000),
        device=reader.get("device", str, "cpu"),
        dtype=reader.get("dtype", str, "float32"),
        targets=targets,
        router=reader.get("router", str, "jsq"),
        target_models=target_models,
        fanout=reader.number("fanout", None, 1, targets, integer=True),
    )
    try:
        make_router(spec.router)
    except ValueError as exc:
        raise reader.fail("router", str(exc)) from exc
    for key, name in (
        ("model", model),
        ("draft", spec.draft),
        *(("targets", m) for m in target_models),
    ):
        _check_device(reader, key, name)
        if key != "draft" and name and is_device_spec(name) and parse_device_spec(name).gpu is None:
            raise reader.fail(key, "a target runs on a GPU (MODEL@GPU[:tpK]), not a timed device")
    if spec.targets > 1 and spec.cpu > 1.0:
        raise reader.fail("cpu", "each of several targets runs on a share of one core: at most 1")
    batching.finish()
    reader.finish()
    return spec


def _target_pools(reader: _Reader, model: str) -> tuple[int, list[str]]:
    """``targets``: a count of replicas of ``model``, or pools ``[{model, count}, ...]`` of
    different models (the simulator's); the target count and each target's model."""
    pools = reader.data.get("targets")
    if not isinstance(pools, list):
        count = reader.number("targets", 1, 1, 64, integer=True)
        return count, [model] * count
    reader.used.add("targets")
    models: list[str] = []
    for index, item in enumerate(pools):
        pool = _Reader(item, reader.key(f"targets[{index}]"), reader.file)
        models += [pool.get("model", str)] * pool.number("count", 1, 1, 10_000, integer=True)
        pool.finish()
    if not models:
        raise reader.fail("targets", "needs at least one pool")
    if "model" in reader.data:
        raise reader.fail("model", "give the model in each pool of targets, not beside them")
    return len(models), models


def _give_fused_its_draft(cloud: CloudSpec, edges: list[EdgeGroup], top: _Reader) -> None:
    """Fused edges draft in the cloud, which holds one draft model: the cloud's ``draft``,
    else the fused groups' own (one for all of them)."""
    drafts = {group.draft for group in edges if group.mode == "fused"}
    if not drafts:
        return
    if cloud.draft is None and len(drafts) > 1:
        raise top.fail("edges", f"fused groups draft with {sorted(drafts)}: the cloud holds one")
    cloud.draft = cloud.draft or drafts.pop()
    for group in edges:
        if group.mode == "fused" and group.draft != cloud.draft:
            raise top.fail(
                "edges", f"fused group {group.name} drafts {group.draft}, the cloud {cloud.draft}"
            )


def _check_device(reader: _Reader, key: str, model: str | None) -> None:
    """A model naming a device must parse (``emulator.sim.device_spec``)."""
    if model and is_device_spec(model):
        try:
            parse_device_spec(model)
        except ValueError as exc:
            raise reader.fail(key, str(exc)) from exc


def _acceptance(reader: _Reader | None) -> AcceptanceSpec | None:
    """An edge group's ``acceptance``: ``alpha``, ``first`` and ``decay``, or
    ``per_position``, with its ``source``."""
    if reader is None:
        return None
    source = reader.get("source", str)
    alpha = reader.number("alpha", None, 0.0, 1.0)
    first = reader.number("first", None, 0.0, 1.0)
    decay = reader.number("decay", None, 0.0, 1.0)
    listed = reader.get("per_position", list, None)
    forms = sum(v is not None for v in (alpha, first, listed))
    if forms != 1:
        raise reader.fail("alpha", "give one of alpha, first (with decay) or per_position")
    if (first is None) != (decay is None):
        raise reader.fail("decay", "first and decay go together")
    if listed is not None:
        if not listed or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v <= 1 for v in listed
        ):
            raise reader.fail("per_position", "must be a non-empty list of numbers in [0, 1]")
        curve = tuple(float(v) for v in listed)
    elif alpha is not None:
        curve = (alpha,)
    else:
        curve = tuple(first * decay**i for i in range(16))
    reader.finish()
    return AcceptanceSpec(curve, source)


def _edge(reader: _Reader, base: Path) -> EdgeGroup:
    name = reader.get("name", str)
    if not name.isalnum() or not name[0].isalpha() or len(name) > 8:
        raise reader.fail("name", "must be 1-8 letters/digits, starting with a letter")
    policy = reader.get("policy", str, "fixed:4")
    try:
        simulated_window_policy(policy)
    except ValueError as exc:
        raise reader.fail("policy", str(exc)) from exc
    mode = reader.get("mode", str, "dsd")
    if mode not in EDGE_MODES:
        raise reader.fail("mode", f"must be one of {', '.join(EDGE_MODES)}, got {mode!r}")
    if mode == "fused" and not policy.startswith("fixed:"):
        raise reader.fail("policy", "a fused group drafts a fixed window in the cloud: fixed:N")
    draft = reader.get("draft", str, DEFAULT_DRAFT)
    replayed = replayed_draft(draft)
    if replayed is not None and is_device_spec(replayed):
        raise reader.fail("draft", "emulated edges replay a draft profiled here, not a device")
    _check_device(reader, "draft", draft)
    if replayed is not None and mode == "edge-only":
        raise reader.fail(
            "draft",
            "edge-only decodes with the draft alone: replay needs a dsd, cloud or fused group",
        )
    speed = reader.number("speed", None, 0.01, 100.0)
    if speed is not None and replayed is None:
        raise reader.fail(
            "speed",
            "only emulated edges (draft: replay) are given a speed; a real draft's is probed",
        )
    link_reader = reader.child("link")
    assert link_reader is not None
    group = EdgeGroup(
        name=name,
        count=reader.number("count", 1, 1, MAX_SIMULATED_EDGES, integer=True),
        draft=replayed or draft,
        cpu=reader.number("cpu", 1.0, 0.01, 1.0),
        threads=reader.number("threads", 1, 1, 64, integer=True),
        policy=policy,
        link=_link(link_reader, base),
        mode=mode,
        replay=replayed is not None,
        speed=1.0 if speed is None else speed,
        acceptance=_acceptance(reader.child("acceptance", None)),
    )
    reader.finish()
    return group


def _workload(reader: _Reader, base: Path) -> Workload:
    arrival = reader.data.get("arrival", "closed")
    poisson = think = None
    if isinstance(arrival, dict):
        arrival_reader = reader.child("arrival")
        assert arrival_reader is not None
        think_reader = arrival_reader.child("think_time_ms", None)
        if think_reader is not None:
            think = ThinkTime(
                think_reader.number("mean", ..., 1e-3, 3.6e6),
                think_reader.number("cv", 0.0, 0.0, 10.0),
                think_reader.number("min", 0.0, 0.0, 3.6e6),
            )
            think_reader.finish()
            arrival = "closed"
        else:
            poisson = arrival_reader.number("poisson_per_s", ..., 1e-6, 1e6)
            arrival = "poisson"
        arrival_reader.finish()
    else:
        arrival = reader.get("arrival", str, "closed")
        if arrival != "closed":
            raise reader.fail(
                "arrival", "must be closed, {poisson_per_s: RATE} or {think_time_ms: {...}}"
            )
    prompts_spec = reader.get("prompts", str, "default")
    try:
        path = None if prompts_spec == "default" else str(base / prompts_spec)
        prompts = load_prompts(None, path)
    except (OSError, ValueError) as exc:
        raise reader.fail("prompts", str(exc)) from exc
    answers = _answer_tokens(reader.child("answer_tokens", None))
    max_new_tokens = reader.number("max_new_tokens", 48, 1, 32_768, integer=True)
    workload = Workload(
        requests_per_edge=reader.number("requests_per_edge", 2, 1, 100_000, integer=True),
        max_new_tokens=answers.high if answers else max_new_tokens,
        arrival=arrival,
        poisson_per_s=poisson,
        prompts=prompts,
        ignore_eos=reader.get("ignore_eos", bool, True),
        answer_tokens=answers,
        prompt_tokens=_prompt_tokens(reader.child("prompt_tokens", None)),
        think_time=think,
    )
    reader.finish()
    return workload


def _answer_tokens(reader: _Reader | None) -> AnswerTokens | None:
    """``answer_tokens: {mean, std, min, max}``: each request's budget, drawn."""
    if reader is None:
        return None
    low = reader.number("min", 1, 1, 32_768, integer=True)
    high = reader.number("max", 32_768, low, 32_768, integer=True)
    answers = AnswerTokens(
        reader.number("mean", ..., low, high), reader.number("std", 0.0, 0.0, 32_768), low, high
    )
    reader.finish()
    return answers


def _prompt_tokens(reader: _Reader | None) -> tuple[int, int] | None:
    """``prompt_tokens: {min, max}``: each request's prompt length, uniform between."""
    if reader is None:
        return None
    low = reader.number("min", ..., 1, 32_768, integer=True)
    high = reader.number("max", ..., low, 32_768, integer=True)
    reader.finish()
    return low, high
