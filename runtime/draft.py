"""The edge draft client: a ZeroMQ DEALER that drafts γ tokens and has the cloud verify them.

Modes: ``dsd`` (draft here, verify in the cloud), ``cloud`` (cloud-only: the target decodes
and streams), ``fused`` (draft and target both in the cloud), ``edge-only`` (the draft
alone, no server). ``--draft replay[:SPEC]`` makes an emulated edge: no model, no torch; the
real draft's tokens and times replayed from the profile (``runtime.replay_draft``).

Run: ``python -m runtime.draft --connect tcp://HOST:5555 [--mode dsd] [--policy fixed:4] ...``
"""

from __future__ import annotations

import argparse
import itertools
import math
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import zmq

from runtime import protocol
from runtime.arguments import (
    SPEED_PROBE_HELP,
    non_negative_float,
    non_negative_int,
    positive_float,
    positive_int,
)
from runtime.arrivals import poisson_offsets
from runtime.cpuquota import CpuQuota
from runtime.events import EventLog
from runtime.model_names import DEFAULT_DRAFT, DEFAULT_TARGET, replayed_draft
from runtime.observations import observation_from_round
from runtime.policies import WindowPolicy, make_window_policy
from runtime.process import parse_cpus, pin, resource_report, stop_on_signals
from runtime.prompts import load_prompts
from runtime.proposal import Drafter
from runtime.replay_draft import (
    DraftServiceClient,
    EdgeClock,
    ReplayDraft,
    ReplayError,
    ReplayTables,
)
from runtime.rounds import DraftedRound, RoundRecord, Verdict
from runtime.sampling import SamplingParams, truncate_emitted
from runtime.security import ClientSecurity, SecurityError
from runtime.transport import wait_readable

if TYPE_CHECKING:
    from runtime.models import LoadedModel

MODES = protocol.EDGE_MODES
# a request's drafter, given its prompt's ids and its session
DrafterFactory = Callable[[list[int], str], Drafter]


class ServerError(RuntimeError):
    """The server answered ``error`` (``code`` is its code) or did not answer in time
    (``code`` "timeout")."""

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.code = code


RESUMABLE = ("timeout", "unknown_session")  # the target died, or restarted and forgot us


class DeadlineExceeded(ServerError):
    """A request ran past its deadline (``--deadline``); its session was closed."""


@dataclass
class RequestResult:
    prompt_ids: list[int]
    output_ids: list[int]
    rounds: int = 0
    t_arrival: float = 0.0
    t_first_token: float | None = None
    t_done: float | None = None
    resumed: int = 0  # sessions re-opened after the target was lost
    # what the first token's time is made of (``first_token_timing``), for the request event
    first_token: dict[str, float] = field(default_factory=dict)


def first_token_timing(t_open_sent: float, opened: dict[str, Any]) -> dict[str, float]:
    """The request event's account of its TTFT: when ``open`` left, when the server drained
    it and sent ``opened``, and the target's prefill (the rest is network and the edge)."""
    return {
        "t_open_sent": t_open_sent,
        "open_server_t_recv": opened["t_recv"],
        "open_server_t_send": opened["t_send"],
        "target_prefill_ms": opened["prefill_ms"],
    }


def real_drafters(draft: LoadedModel, params: SamplingParams) -> DrafterFactory:
    """Each request's drafter: the draft model itself, with a cache of the request's own."""
    from runtime.drafting import DraftState

    return lambda prompt, session: DraftState(draft, params, params.seed + 1)


@dataclass
class EdgeSettings:
    """How an edge client runs its requests: its name in the logs, its window policy and
    sampling, where it logs, how long it waits for a reply (and for the CPU, spinning), its
    CURVE keys, each request's deadline, and how often and how soon it re-opens a session
    after the target was lost."""

    edge: str = "edge0"
    policy: WindowPolicy | None = None  # None: fixed:4
    params: SamplingParams = field(default_factory=SamplingParams)
    log: EventLog | None = None  # None: events are kept nowhere
    timeout_s: float = 60.0
    spin_ms: float = 0.0
    security: ClientSecurity | None = None
    deadline_s: float | None = None
    retries: int = 0
    backoff_s: float = 0.5


class EdgeClient:
    """Runs requests one after another (closed loop) against a target server. The draft is
    a loaded model (``draft``) or, for an emulated edge, ``drafters`` and its ``eos_ids``."""

    def __init__(
        self,
        connect: str | None,
        draft: LoadedModel | None,
        settings: EdgeSettings | None = None,
        *,
        drafters: DrafterFactory | None = None,
        eos_ids: set[int] | None = None,
        context: zmq.Context | None = None,
    ) -> None:
        settings = settings or EdgeSettings()
        self.edge = settings.edge
        self.deadline_s = settings.deadline_s
        self._deadline = float("inf")  # the running request's, on the monotonic clock
        self.retries = settings.retries
        self.backoff_s = settings.backoff_s
        self.policy = settings.policy or make_window_policy("fixed:4")
        self.params = settings.params
        self.log = settings.log or EventLog(None, self.edge)
        self.timeout_ms = int(settings.timeout_s * 1000)
        self.spin_ms = settings.spin_ms
        self.drafters = real_drafters(draft, self.params) if draft is not None else drafters
        eos = draft.eos_ids if draft is not None else eos_ids or set()
        self.eos_ids = set() if self.params.ignore_eos else set(eos)
        self._ids = itertools.count()
        self.requests_started = 0
        self.socket: zmq.Socket | None = None
        if connect:
            self.socket = (context or zmq.Context.instance()).socket(zmq.DEALER)
            self.socket.setsockopt(zmq.LINGER, 0)
            self.socket.setsockopt(zmq.MAXMSGSIZE, protocol.MAX_MESSAGE_BYTES)
            if settings.security is not None:
                settings.security.apply(self.socket)
            self.socket.connect(connect)

    def close(self) -> None:
        if self.socket is not None:
            self.socket.close(0)

    # -- transport -----------------------------------------------------------------------
    def _send(self, message: dict[str, Any]) -> int:
        payload = protocol.encode(message)
        assert self.socket is not None
        self.socket.send(payload)
        return len(payload)

    def _recv(self, session: str, types: tuple[str, ...]) -> tuple[dict[str, Any], int]:
        """Wait for this session's next reply of the given types; stale replies are skipped."""
        assert self.socket is not None
        reply_by = time.monotonic() + self.timeout_ms / 1000.0
        deadline_first = self._deadline <= reply_by  # which of the two limits this wait hits
        limit = min(reply_by, self._deadline)
        while True:
            remaining = math.ceil((limit - time.monotonic()) * 1000)
            if remaining <= 0 or not wait_readable(self.socket, remaining, self.spin_ms):
                if deadline_first:
                    raise DeadlineExceeded(f"the deadline of {self.deadline_s:g} s passed")
                raise ServerError(
                    f"no reply from the server within {self.timeout_ms / 1000:.0f} s", "timeout"
                )
            frame = self.socket.recv()
            try:
                message = protocol.decode(frame)
            except protocol.ProtocolError as exc:
                raise ServerError(f"malformed reply from the server: {exc}") from exc
            if message["type"] == "error":
                if message.get("session") in (None, session):
                    raise ServerError(
                        f"server error {message['code']}: {message['message']}", message["code"]
                    )
                continue
            if message.get("session") == session and message["type"] in types:
                return message, len(frame)

    # -- requests ------------------------------------------------------------------------
    def request(
        self,
        prompt_ids: list[int],
        max_tokens: int,
        mode: str = "dsd",
        t_arrival: float | None = None,
    ) -> RequestResult:
        """Serve one request in the given mode and log its ``request`` event; ``t_arrival``
        (epoch s) is when an open-loop request arrived, if earlier than now. A request stopped
        by a signal (KeyboardInterrupt) is logged too, as failed with "interrupted"."""
        self.requests_started += 1
        session = f"{self.edge}-{os.getpid()}-{next(self._ids)}"
        arrival = time.time() if t_arrival is None else t_arrival
        result = RequestResult(prompt_ids=list(prompt_ids), output_ids=[], t_arrival=arrival)
        if self.deadline_s is not None:
            self._deadline = time.monotonic() + self.deadline_s - (time.time() - arrival)
        failure: ServerError | None = None
        interrupted = False
        try:
            if mode == "edge-only":
                self._run_edge_only(result, max_tokens)
            elif mode == "dsd":
                self._run_dsd(session, result, max_tokens)
            elif mode in ("cloud", "fused"):
                self._run_streaming(session, result, max_tokens, mode)
            else:
                raise ValueError(f"unknown mode {mode!r}; choose one of {', '.join(MODES)}")
        except DeadlineExceeded as exc:
            failure = DeadlineExceeded(f"{exc} after {len(result.output_ids)} tokens")
            if self.socket is not None:
                self._send({"type": "close", "session": session})  # its reply is skipped later
        except ServerError as exc:
            failure = exc
        except ReplayError as exc:  # an emulated edge's tables ended and no shared draft answered
            failure = ServerError(f"the emulated edge could not draft: {exc}", "replay")
        except KeyboardInterrupt:
            interrupted = True
        finally:
            self._deadline = float("inf")
        self.log.write(
            "request",
            session=session,
            edge=self.edge,
            mode=mode,
            prompt_tokens=len(prompt_ids),
            output_tokens=len(result.output_ids),
            rounds=result.rounds,
            t_arrival=result.t_arrival,
            t_first_token=result.t_first_token,
            t_done=result.t_done,
            **result.first_token,
            **({"resumed": result.resumed} if result.resumed else {}),
            **({"error": str(failure)} if failure else {}),
            **({"error": "interrupted"} if interrupted else {}),
        )
        if interrupted:
            raise KeyboardInterrupt
        if failure:
            raise failure
        return result

    def _open(self, session: str, prompt: list[int], max_tokens: int, mode: str) -> int:
        return self._send(
            {
                "type": "open",
                "session": session,
                "prompt": protocol.pack_ids(prompt),
                "max_tokens": max_tokens,
                "mode": mode,
                "sampling": self.params.to_dict(),
                "gamma": self.policy.next_gamma(len(prompt)),
            }
        )

    def _reopen(
        self,
        session: str,
        committed: list[int],
        result: RequestResult,
        max_tokens: int,
        lost: ServerError,
    ) -> tuple[str, bool]:
        """The target died or restarted: open a new session whose prompt is everything
        committed so far, after a backoff that doubles each try; its first token is the
        request's next one. Returns the new session and whether the request is done."""
        for attempt in range(self.retries):
            time.sleep(self.backoff_s * 2**attempt)
            resumed = f"{session.split('~')[0]}~{attempt}-{next(self._ids)}"
            remaining = max_tokens - len(result.output_ids)
            self._open(resumed, committed, remaining, "dsd")
            try:
                opened, _ = self._recv(resumed, ("opened",))
            except ServerError as exc:
                if exc.code not in RESUMABLE:
                    raise
                continue
            emitted, done = truncate_emitted([opened["token"]], remaining, self.eos_ids)
            committed.extend(emitted)
            result.output_ids.extend(emitted)
            result.resumed += 1
            return resumed, done or opened["done"]
        raise ServerError(
            f"the target was lost ({lost}) and did not answer {self.retries} re-opens", "lost"
        )

    def _finish(self, session: str) -> None:
        self._send({"type": "close", "session": session})
        self._recv(session, ("closed",))

    def _run_dsd(self, session: str, result: RequestResult, max_tokens: int) -> None:
        if self.drafters is None:
            raise ValueError("dsd mode needs a draft model")
        committed = list(result.prompt_ids)
        drafter = self.drafters(committed, session)
        try:
            self._dsd_rounds(session, result, max_tokens, committed, drafter)
        finally:
            drafter.close()

    def _dsd_rounds(
        self,
        session: str,
        result: RequestResult,
        max_tokens: int,
        committed: list[int],
        drafter: Drafter,
    ) -> None:
        t_open_sent = time.time()
        self._open(session, committed, max_tokens, "dsd")
        prefill = drafter.prefill(committed)  # overlaps with the server's prefill
        opened, _ = self._recv(session, ("opened",))
        result.t_first_token = time.time()
        result.first_token = {
            **first_token_timing(t_open_sent, opened),
            "draft_prefill_ms": prefill.wall_ms,
            "draft_prefill_cpu_ms": prefill.cpu_ms,
        }
        result.output_ids.append(opened["token"])
        committed.append(opened["token"])
        done = opened["done"]
        session_round = 0
        while not done:
            remaining = max_tokens - len(result.output_ids)
            gamma = max(0, min(self.policy.next_gamma(len(committed)), remaining - 1))
            proposal = drafter.propose(committed, gamma)
            message: dict[str, Any] = {
                "type": "verify",
                "session": session,
                "round": session_round,
                "draft": protocol.pack_ids(proposal.tokens),
            }
            if self.policy.asks_server:
                message["draft_ms"] = proposal.draft_ms
            if proposal.q_ids is not None and proposal.q_probs is not None:
                message["q_ids"] = protocol.pack_ids(proposal.q_ids.flatten().tolist())
                message["q_probs"] = protocol.pack_probs(proposal.q_probs.flatten().numpy())
            t_send = time.time()
            message["t_send"] = t_send
            bytes_up = self._send(message)
            try:
                reply, bytes_down = self._recv(session, ("verdict",))
            except ServerError as exc:
                if exc.code not in RESUMABLE or not self.retries:
                    raise
                drafter.accept(0)  # this round's drafts were never verified
                session, done = self._reopen(session, committed, result, max_tokens, exc)
                session_round = 0
                continue
            session_round += 1
            t_recv = time.time()
            verdict = Verdict.from_wire(reply)
            emitted, done = truncate_emitted(
                [*proposal.tokens[: verdict.accepted], verdict.token], remaining, self.eos_ids
            )
            done = done or verdict.done
            committed.extend(emitted)
            result.output_ids.extend(emitted)
            drafter.accept(verdict.accepted)
            drafted = DraftedRound(
                gamma,
                proposal.draft_ms,
                t_send,
                bytes_up,
                proposal.draft_cpu_ms,
                proposal.source,
                proposal.fallback_ms if proposal.source else None,
            )
            record = RoundRecord.of_verdict(
                drafted,
                verdict,
                edge=self.edge,
                index=result.rounds,
                emitted=len(emitted),
                context_len=len(committed),
                t_recv=t_recv,
                bytes_down=bytes_down,
            )
            self.policy.observe(observation_from_round(self.log.write("round", **record.event())))
            result.rounds += 1
        result.t_done = time.time()
        self._finish(session)

    def _run_streaming(
        self, session: str, result: RequestResult, max_tokens: int, mode: str
    ) -> None:
        t_open_sent = time.time()
        self._open(session, result.prompt_ids, max_tokens, mode)
        opened, _ = self._recv(session, ("opened",))
        result.t_first_token = time.time()
        result.first_token = first_token_timing(t_open_sent, opened)
        result.output_ids.append(opened["token"])
        done = opened["done"]
        while not done:
            message, size = self._recv(session, ("tokens",))
            t_recv = time.time()
            tokens = protocol.unpack_ids(message["tokens"])
            result.output_ids.extend(tokens)
            done = message["done"]
            record = RoundRecord.of_stream(
                session,
                self.edge,
                result.rounds,
                message,
                emitted=len(tokens),
                context_len=len(result.prompt_ids) + len(result.output_ids),
                t_recv=t_recv,
                bytes_down=size,
            )
            self.log.write("round", **record.event())
            result.rounds += 1
        result.t_done = time.time()
        self._finish(session)

    def _run_edge_only(self, result: RequestResult, max_tokens: int) -> None:
        if self.drafters is None:
            raise ValueError("edge-only mode needs a draft model")
        committed = list(result.prompt_ids)
        drafter = self.drafters(committed, "edge-only")
        if len(committed) > 1:
            drafter.prefill(committed[:-1])  # the last prompt token is fed by the first step
        done = False
        while not done:
            token = drafter.propose(committed, 1).tokens[0]
            drafter.accept(1)
            emitted, done = truncate_emitted(
                [token], max_tokens - len(result.output_ids), self.eos_ids
            )
            committed.extend(emitted)
            result.output_ids.extend(emitted)
            if result.t_first_token is None:
                result.t_first_token = time.time()
        result.t_done = time.time()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connect", default="tcp://127.0.0.1:5555", help="target server endpoint")
    parser.add_argument("--mode", choices=MODES, default="dsd")
    parser.add_argument(
        "--base",
        default=DEFAULT_TARGET,
        help="model the draft is derived from (int8, bf16, ...); also its tokenizer",
    )
    parser.add_argument(
        "--draft",
        default=DEFAULT_DRAFT,
        help="draft spec (int8, bf16, a model spec), or replay[:SPEC] for an emulated edge: "
        "no model, the draft's recorded tokens and its profiled times (see --replay-profile)",
    )
    replay = parser.add_argument_group("emulated edges (--draft replay)")
    replay.add_argument("--replay-profile", help="the pair's profile (version 8) to replay")
    replay.add_argument(
        "--replay-service",
        help="endpoint of the shared real draft (python -m runtime.draft_service), asked "
        "where the committed text leaves the tables; without one such a request fails",
    )
    replay.add_argument(
        "--quota-share",
        type=positive_float,
        default=1.0,
        help="the edge's CPU quota as a share of one core, which the profiled times are spent "
        "on (default: a whole core)",
    )
    replay.add_argument(
        "--quota-phase-ms",
        type=non_negative_float,
        default=0.0,
        help="where the quota's 100 ms periods begin, after the workload's start",
    )
    replay.add_argument(
        "--draft-speed",
        type=positive_float,
        default=1.0,
        help="the device's draft time over the profile's (default: as profiled)",
    )
    parser.add_argument("--policy", default="fixed:4", help="window policy, e.g. fixed:4")
    parser.add_argument("--edge", default="edge0", help="name of this edge in the event log")
    parser.add_argument("--prompt", action="append", help="a prompt (repeatable)")
    parser.add_argument("--prompts", help="file with one prompt per line")
    parser.add_argument("--requests", type=positive_int, default=1, help="requests to run")
    parser.add_argument(
        "--arrival-rate",
        type=positive_float,
        help="open loop: Poisson arrivals at this rate (requests/s, seeded by --seed and "
        "--edge); default: closed loop, each request as soon as the last one ends",
    )
    parser.add_argument(
        "--wait-start",
        action="store_true",
        help="after loading, print 'draft: ready' and wait for SIGUSR1 before the first request\n"
        "(with --speed-probe: first print 'draft: loaded' and wait for SIGUSR2 to probe)",
    )
    parser.add_argument(
        "--speed-probe",
        action="store_true",
        help=SPEED_PROBE_HELP,
    )
    parser.add_argument("--max-new-tokens", type=positive_int, default=64)
    parser.add_argument("--temperature", type=float, default=0.0, help="0 = greedy")
    parser.add_argument("--top-k", type=int, default=0)
    parser.add_argument("--top-p", type=float, default=1.0)
    parser.add_argument(
        "--draft-top-k",
        type=int,
        default=16,
        help="the draft samples from its top-k, sent exactly to the target",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--ignore-eos", action="store_true", help="always generate --max-new-tokens tokens"
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--threads", type=positive_int, default=1, help="torch intra-op threads")
    parser.add_argument("--cpus", help="pin to these CPUs, e.g. 0")
    parser.add_argument(
        "--timeout", type=positive_float, default=60.0, help="seconds to wait for a reply"
    )
    parser.add_argument(
        "--retries",
        type=non_negative_int,
        default=3,
        help="when the target is lost mid-request (no reply within --timeout, or it restarted "
        "and forgot the session), re-open the session with everything committed so far, "
        "up to this many times, waiting --backoff x 2^try before each (default: %(default)s)",
    )
    parser.add_argument(
        "--backoff", type=non_negative_float, default=0.5, help="first wait before a re-open (s)"
    )
    parser.add_argument(
        "--deadline",
        type=positive_float,
        help="seconds from a request's arrival to its last token; past it the request fails "
        "(its error says so) and its session is closed (default: none)",
    )
    parser.add_argument(
        "--spin-ms",
        type=non_negative_float,
        default=0.0,
        help="busy-poll this long for a reply before blocking (burns CPU)",
    )
    parser.add_argument("--log", help="JSONL event log to append to")
    parser.add_argument("--print", action="store_true", help="print each generated text")
    parser.add_argument(
        "--curve-secret",
        type=Path,
        help="CURVE on: this edge's NAME.key_secret (python -m runtime.security keygen)",
    )
    parser.add_argument(
        "--curve-server-key", type=Path, help="with --curve-secret: the server's public NAME.key"
    )
    return parser


def say_and_wait(line: str, signum: int) -> None:
    """Print ``line`` and block until ``signum`` arrives (the handler is in place first, so
    that a signal sent as soon as the line is read is not lost)."""
    arrived = threading.Event()
    signal.signal(signum, lambda *_: arrived.set())
    print(line, flush=True)
    while not arrived.wait(0.5):
        pass


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if (args.curve_secret is None) != (args.curve_server_key is None):
        print("draft: error: CURVE needs --curve-secret and --curve-server-key", file=sys.stderr)
        return 2
    stop_on_signals()
    log = EventLog(args.log, args.edge)
    clients: list[EdgeClient] = []  # the one client, once the models are loaded
    try:
        return serve_requests(args, log, clients)
    except KeyboardInterrupt:
        return 130
    finally:
        started = clients[0].requests_started if clients else 0
        log.write(
            "process",
            t=time.time(),
            events=log.written,
            requests_started=started,
            **resource_report(f"draft:{args.edge}"),
        )
        for client in clients:
            client.close()
        log.close()


@dataclass
class DraftSide:
    """What an edge drafts with: a loaded model, or an emulated edge's replay tables."""

    encode: Callable[[str], list[int]]
    decode: Callable[[list[int]], str]
    model: LoadedModel | None = None
    drafters: DrafterFactory | None = None
    eos_ids: set[int] = field(default_factory=set)
    clock: EdgeClock | None = None  # an emulated edge's CPU, started with the workload


def real_side(args: argparse.Namespace) -> DraftSide:
    """Pin, set the threads and load the models (torch is imported here, and only here)."""
    from runtime.models import ModelError, load_model, make_draft
    from runtime.process import configure

    try:
        configure(args.threads, parse_cpus(args.cpus))
        base = load_model(args.base, args.device, args.dtype, args.seed)
        draft = make_draft(args.draft, base, args.device, args.dtype, args.seed)
    except ModelError as exc:
        raise ValueError(str(exc)) from exc
    return DraftSide(draft.encode_prompt, draft.decode, model=draft)


def replay_side(args: argparse.Namespace, params: SamplingParams, prompts: list[str]) -> DraftSide:
    """An emulated edge: the profile's tables, its CPU quota, the shared real draft."""
    if args.mode == "edge-only":
        raise ValueError(
            "edge-only decodes with the draft alone: the replay tables follow the "
            "target's output; give a real draft"
        )
    if not params.greedy:
        raise ValueError("a replayed draft is greedy: the tables hold greedy tokens")
    if args.speed_probe:
        raise ValueError("--speed-probe needs a real draft (a replayed one has no model)")
    if not args.replay_profile:
        raise ValueError("--draft replay needs --replay-profile (the pair's profile, version 8)")
    pin(parse_cpus(args.cpus))
    tables = ReplayTables.load(args.replay_profile)
    for text in prompts:
        tables.table(text)  # every prompt is in the tables, or this says which is not
    service = DraftServiceClient(args.replay_service) if args.replay_service else None
    clock = EdgeClock(CpuQuota(args.quota_share, args.quota_phase_ms), args.draft_speed)

    def drafter(prompt: list[int], session: str) -> ReplayDraft:
        return ReplayDraft(tables.by_prompt(prompt), tables.timing, clock, service, session)

    return DraftSide(
        lambda text: list(tables.table(text).prompt_ids),
        lambda ids: f"({len(ids)} tokens, replayed: {' '.join(map(str, ids[:12]))} ...)",
        drafters=drafter,
        eos_ids=tables.eos_ids,
        clock=clock,
    )


def serve_requests(args: argparse.Namespace, log: EventLog, clients: list[EdgeClient]) -> int:
    """Load the models (or the replay tables), then run the requests; the client is put in
    ``clients`` so that the caller can account for it however this ends."""
    try:
        policy = make_window_policy(args.policy)
        params = SamplingParams(
            args.temperature, args.top_k, args.top_p, args.draft_top_k, args.seed, args.ignore_eos
        )
        prompts = load_prompts(args.prompt, args.prompts)
        replayed = replayed_draft(args.draft) is not None
        side = replay_side(args, params, prompts) if replayed else real_side(args)
    except (ValueError, OSError) as exc:
        print(f"draft: error: {exc}", file=sys.stderr)
        return 2
    if args.speed_probe and side.model is not None:
        from runtime.profile import speed_probe

        if args.wait_start:
            # probed once every edge has loaded, beside them as they will run, not while
            # their loading still takes the memory bandwidth
            say_and_wait("draft: loaded", signal.SIGUSR2)
        log.write("speed", **speed_probe(side.model, "draft"), at="start")
    connect = None if args.mode == "edge-only" else args.connect
    try:
        security = (
            ClientSecurity(args.curve_secret, args.curve_server_key) if args.curve_secret else None
        )
        settings = EdgeSettings(
            args.edge,
            policy,
            params,
            log,
            args.timeout,
            spin_ms=args.spin_ms,
            security=security,
            deadline_s=args.deadline,
            retries=args.retries,
            backoff_s=args.backoff,
        )
        client = EdgeClient(
            connect, side.model, settings, drafters=side.drafters, eos_ids=side.eos_ids
        )
    except SecurityError as exc:
        print(f"draft: error: {exc}", file=sys.stderr)
        return 2
    clients.append(client)
    if args.wait_start:
        # the orchestrator starts every edge's workload at one moment: the traces' time zero
        say_and_wait("draft: ready", signal.SIGUSR1)
    started = time.time()
    if side.clock is not None:
        side.clock.origin = started  # the quota's periods run from the workload's start
    offsets = (
        poisson_offsets(args.arrival_rate, args.requests, args.seed, args.edge)
        if args.arrival_rate
        else None
    )
    status = 0
    for index in range(args.requests):
        text = prompts[index % len(prompts)]
        arrival = None
        if offsets is not None:
            arrival = started + offsets[index]
            time.sleep(max(0.0, arrival - time.time()))
        try:
            result = client.request(side.encode(text), args.max_new_tokens, args.mode, arrival)
        except ServerError as exc:
            print(f"draft: request {index} failed: {exc}", file=sys.stderr)
            status = 1
            continue
        if args.print:
            print(side.decode(result.output_ids), flush=True)
    if args.speed_probe and side.model is not None:
        from runtime.profile import speed_probe

        # and once the requests are done: the run's speed is the mean of both
        log.write("speed", **speed_probe(side.model, "draft"), at="end")
    return status


if __name__ == "__main__":
    raise SystemExit(main())
