"""The cloud target server: a ZeroMQ ROUTER serving many edge sessions with batched verification.

Each loop iteration drains the socket, answers ``open``/``close`` at once, queues
``verify`` requests, and when the batching policy says so runs every queued verification
(plus one decode step of each ``cloud`` session and one round of each ``fused`` session)
in a single forward pass.

Run: ``python -m runtime.target --bind tcp://0.0.0.0:5555 [--model smollm2] ...``
"""

from __future__ import annotations

import argparse
import collections
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import zmq

from runtime import protocol
from runtime.arguments import SPEED_PROBE_HELP, non_negative_float, positive_float, positive_int
from runtime.drafting import DraftState, Proposal
from runtime.events import EventLog
from runtime.kvcache import Row, crop_to, forward_one, forward_rows, new_cache
from runtime.model_names import DEFAULT_TARGET
from runtime.models import LoadedModel, ModelError, load_model, make_draft
from runtime.observations import peer_widths
from runtime.policies import BatchingPolicy
from runtime.process import configure, parse_cpus, resource_report
from runtime.profile import speed_probe
from runtime.rounds import Verdict
from runtime.sampling import SamplingParams, truncate_emitted
from runtime.security import ServerSecurity
from runtime.transport import wait_readable
from runtime.utilisation import BUSY_WINDOW_S, BusyMeter
from runtime.verify import greedy_verify, stochastic_verify, target_probs
from runtime.window_advice import WindowAdvisor

POLL_IDLE_MS = 100
DEFAULT_SESSION_TIMEOUT_S = 300.0


@dataclass
class Session:
    """Server-side state of one request: committed tokens and the target cache behind them.

    The cache always holds every committed token but the last, which is fed next round.
    """

    identity: bytes
    sid: str
    mode: str
    params: SamplingParams
    generator: torch.Generator
    committed: list[int]
    prompt_len: int
    max_tokens: int
    cache: Any
    gamma: int = 0
    next_round: int = 0
    done: bool = False
    last_seen: float = field(default_factory=time.monotonic)
    drafter: DraftState | None = None

    @property
    def remaining(self) -> int:
        return self.max_tokens - (len(self.committed) - self.prompt_len)


@dataclass
class PendingVerify:
    session: Session
    round: int
    proposal: Proposal
    t_recv: float
    queued_at: float
    advised: bool = False  # the edge sent its drafting time: it asks for a window hint


@dataclass(frozen=True)
class ServerLimits:
    """What one server accepts, each answered with its own error code when exceeded: open
    sessions in all and per client (``too_many_sessions``, ``client_session_limit``),
    tokens of context per session (``context_limit``; never more than the model's), and
    bytes per message (``message_too_large``; twice that and ZeroMQ drops the connection
    before the message is read into memory)."""

    max_sessions: int = 256
    max_sessions_per_client: int = 16
    max_context: int | None = None
    max_message_bytes: int = protocol.MAX_MESSAGE_BYTES


class TargetServer:
    """Serves verification for many sessions; call ``serve`` (blocking) and ``stop``."""

    def __init__(
        self,
        target: LoadedModel,
        bind: str,
        batching: BatchingPolicy | None = None,
        log: EventLog | None = None,
        draft: LoadedModel | None = None,
        session_timeout_s: float = DEFAULT_SESSION_TIMEOUT_S,
        context: zmq.Context | None = None,
        spin_ms: float = 0.0,
        security: ServerSecurity | None = None,
        limits: ServerLimits | None = None,
    ) -> None:
        self.target = target
        self.limits = limits = limits or ServerLimits()
        self.draft = draft
        self.batching = batching or BatchingPolicy()
        self.busy = BusyMeter(BUSY_WINDOW_S)
        self.advisor = WindowAdvisor(self.batching.max_batch)
        self.log = log or EventLog(None, "target")
        self.session_timeout_s = session_timeout_s
        self.spin_ms = spin_ms
        self.sessions: dict[tuple[bytes, str], Session] = {}
        self.pending: collections.deque[PendingVerify] = collections.deque()
        self.counters: collections.Counter[str] = collections.Counter()
        self._stop = threading.Event()
        self._context = context or zmq.Context.instance()
        self.socket = self._context.socket(zmq.ROUTER)
        self.socket.setsockopt(zmq.MAXMSGSIZE, 2 * limits.max_message_bytes)
        self.socket.setsockopt(zmq.LINGER, 0)
        self._authenticator = security.apply(self.socket, self._context) if security else None
        self.socket.bind(bind)
        self.endpoint = self.socket.getsockopt_string(zmq.LAST_ENDPOINT)
        model_context = int(getattr(target.model.config, "max_position_embeddings", 1 << 30))
        self.max_context = min(model_context, limits.max_context or model_context)

    def stop(self) -> None:
        self._stop.set()

    # -- main loop -----------------------------------------------------------------------
    def serve(self, at_stop: Callable[[], None] = lambda: None) -> None:
        """Serve until ``stop``; then ``at_stop()`` (a last event to log), then the process
        record."""
        last_sweep = time.monotonic()
        stopped = False
        try:
            while not self._stop.is_set():
                if wait_readable(self.socket, self._poll_timeout_ms(), self.spin_ms):
                    self._drain()
                if self._should_run_batch():
                    self._run_batch()
                if time.monotonic() - last_sweep > 1.0:
                    self._expire_idle_sessions()
                    last_sweep = time.monotonic()
            stopped = True
        finally:
            if stopped:
                at_stop()
            self.log.write(
                "process",
                t=time.time(),
                counters=dict(self.counters),
                events=self.log.written,
                **resource_report("target"),
            )
            self.socket.close(0)
            if self._authenticator is not None:
                self._authenticator.stop()

    def _streaming_sessions(self) -> list[Session]:
        return [s for s in self.sessions.values() if s.mode != "dsd" and not s.done]

    def _active_dsd_sessions(self) -> int:
        return sum(1 for s in self.sessions.values() if s.mode == "dsd" and not s.done)

    def _oldest_wait_ms(self) -> float:
        return (time.monotonic() - self.pending[0].queued_at) * 1000.0 if self.pending else 0.0

    def _poll_timeout_ms(self) -> float:
        if self._streaming_sessions():
            return 0
        if self.pending:
            return self.batching.wait_budget_ms(self._oldest_wait_ms())
        return POLL_IDLE_MS

    def _should_run_batch(self) -> bool:
        return self.batching.should_dispatch(
            len(self.pending),
            self._active_dsd_sessions(),
            self._oldest_wait_ms(),
            len(self._streaming_sessions()),
        )

    def _drain(self) -> None:
        while self.socket.getsockopt(zmq.EVENTS) & zmq.POLLIN:
            frames = self.socket.recv_multipart(zmq.NOBLOCK)
            self.counters["messages"] += 1
            self._handle(frames)

    # -- messages ------------------------------------------------------------------------
    def _reply(self, identity: bytes, message: dict[str, Any]) -> None:
        self.socket.send_multipart([identity, protocol.encode(message)])

    def _error(self, identity: bytes, code: str, text: str, session: str | None = None) -> None:
        self.counters[f"error:{code}"] += 1
        self._reply(identity, {"type": "error", "code": code, "message": text, "session": session})

    def _handle(self, frames: list[bytes]) -> None:
        identity = frames[0]
        if len(frames) != 2:
            self._error(identity, "bad_message", f"expected one frame, got {len(frames) - 1}")
            return
        limit = self.limits.max_message_bytes
        if len(frames[1]) > limit:
            text = f"{len(frames[1])} bytes; this server takes at most {limit}"
            self._error(identity, "message_too_large", text)
            return
        t_recv = time.time()
        try:
            message = protocol.decode(frames[1], expect=("open", "verify", "close"))
        except protocol.ProtocolError as exc:
            self._error(identity, exc.code, str(exc))
            return
        handler = {"open": self._open, "verify": self._verify, "close": self._close}
        try:
            handler[message["type"]](identity, message, t_recv)
        except protocol.ProtocolError as exc:
            self._error(identity, exc.code, str(exc), message.get("session"))
        except Exception as exc:  # a bug must cost one request, never the server
            self._error(
                identity, "internal", f"{type(exc).__name__}: {exc}", message.get("session")
            )

    def _check_tokens(self, ids: list[int], what: str) -> None:
        vocab = self.target.vocab_size
        if any(not 0 <= i < vocab for i in ids):
            raise protocol.ProtocolError(
                f"{what} holds token ids outside 0..{vocab - 1}", "bad_token"
            )

    def _open(self, identity: bytes, message: dict[str, Any], t_recv: float) -> None:
        key = (identity, message["session"])
        if key in self.sessions:
            raise protocol.ProtocolError("session already open", "session_exists")
        if len(self.sessions) >= self.limits.max_sessions:
            raise protocol.ProtocolError(
                f"the server holds its maximum of {self.limits.max_sessions} sessions",
                "too_many_sessions",
            )
        own = sum(1 for client, _ in self.sessions if client == identity)
        if own >= self.limits.max_sessions_per_client:
            raise protocol.ProtocolError(
                f"this client holds its maximum of {self.limits.max_sessions_per_client} "
                "open sessions",
                "client_session_limit",
            )
        prompt = protocol.unpack_ids(message["prompt"])
        self._check_tokens(prompt, "prompt")
        if len(prompt) + message["max_tokens"] > self.max_context:
            raise protocol.ProtocolError(
                f"prompt + max_tokens exceeds this server's context of {self.max_context}",
                "context_limit",
            )
        mode = message["mode"]
        if mode == "fused" and self.draft is None:
            raise protocol.ProtocolError(
                "this server has no draft model for fused mode", "no_draft"
            )
        params = SamplingParams(**message["sampling"])
        session = Session(
            identity=identity,
            sid=message["session"],
            mode=mode,
            params=params,
            generator=torch.Generator().manual_seed(params.seed),
            committed=list(prompt),
            prompt_len=len(prompt),
            max_tokens=message["max_tokens"],
            cache=new_cache(),
            gamma=message.get("gamma", 4),
        )
        start = time.perf_counter()
        logits = forward_one(self.target.model, session.cache, prompt, 1)
        first = self._choose(session, logits)
        if mode == "fused":
            assert self.draft is not None  # refused above without one
            session.drafter = DraftState(self.draft, params, params.seed + 1)
            session.drafter.prefill(prompt)
        prefill_ms = (time.perf_counter() - start) * 1000.0
        self.busy.add(time.monotonic() - prefill_ms / 1000.0, time.monotonic())
        emitted, session.done = truncate_emitted([first], session.remaining, self._eos(session))
        session.committed.extend(emitted)
        self.sessions[key] = session
        self.counters["opened"] += 1
        self._reply(
            identity,
            {
                "type": "opened",
                "session": session.sid,
                "token": first,
                "done": session.done,
                "prefill_ms": prefill_ms,
                "t_recv": t_recv,
                "t_send": time.time(),
            },
        )

    def _eos(self, session: Session) -> set[int]:
        """The tokens that end this session's output early (none when it ignores EOS)."""
        return set() if session.params.ignore_eos else self.target.eos_ids

    def _choose(self, session: Session, logits: torch.Tensor) -> int:
        """Pick one token from the target's own distribution (greedy or sampled)."""
        if session.params.greedy:
            return int(logits[-1].argmax())
        probs = target_probs(logits[-1], session.params)
        return int(torch.multinomial(probs, 1, generator=session.generator))

    def _verify(self, identity: bytes, message: dict[str, Any], t_recv: float) -> None:
        session = self.sessions.get((identity, message["session"]))
        if session is None:
            raise protocol.ProtocolError("unknown session", "unknown_session")
        session.last_seen = time.monotonic()
        if session.mode != "dsd":
            raise protocol.ProtocolError("verify is only valid in dsd mode", "bad_mode")
        if session.done:
            raise protocol.ProtocolError("session is already done", "session_done")
        if any(p.session is session for p in self.pending):
            raise protocol.ProtocolError("a verify for this session is already queued", "busy")
        if message["round"] != session.next_round:
            raise protocol.ProtocolError(
                f"expected round {session.next_round}, got {message['round']}", "bad_round"
            )
        draft = protocol.unpack_ids(message["draft"])
        self._check_tokens(draft, "draft")
        if len(session.committed) + len(draft) + 1 > self.max_context:
            raise protocol.ProtocolError("context limit reached", "context_limit")
        q_ids = q_probs = None
        if not session.params.greedy and draft:
            if "q_ids" not in message:
                raise protocol.ProtocolError("sampling needs q_ids and q_probs", "bad_message")
            ids = protocol.unpack_ids(message["q_ids"])
            probs = protocol.unpack_probs(message["q_probs"])
            if len(ids) % len(draft) or not len(ids):
                raise protocol.ProtocolError(
                    "q must hold the same k entries per token", "bad_message"
                )
            self._check_tokens(ids, "q_ids")
            if not (probs >= 0).all() or not torch.isfinite(torch.from_numpy(probs.copy())).all():
                raise protocol.ProtocolError("q_probs must be finite and >= 0", "bad_message")
            q_ids = torch.tensor(ids, dtype=torch.long).view(len(draft), -1)
            q_probs = torch.from_numpy(probs.copy()).view(len(draft), -1)
        proposal = Proposal(draft, q_ids, q_probs, 0.0)
        advised = "draft_ms" in message
        if advised:
            key = (identity, session.sid)
            self.advisor.request(key, t_recv * 1000.0, len(draft), float(message["draft_ms"]))
        self.pending.append(
            PendingVerify(session, message["round"], proposal, t_recv, time.monotonic(), advised)
        )

    def _close(self, identity: bytes, message: dict[str, Any], t_recv: float) -> None:
        session = self.sessions.pop((identity, message["session"]), None)
        if session is None:
            raise protocol.ProtocolError("unknown session", "unknown_session")
        self.pending = collections.deque(p for p in self.pending if p.session is not session)
        self.advisor.close((identity, session.sid))
        self.counters["closed"] += 1
        self._reply(identity, {"type": "closed", "session": session.sid})

    def _expire_idle_sessions(self) -> None:
        now = time.monotonic()
        busy = {id(p.session) for p in self.pending}
        for key, session in list(self.sessions.items()):
            idle = session.mode == "dsd" or session.done
            if (
                idle
                and id(session) not in busy
                and now - session.last_seen > self.session_timeout_s
            ):
                del self.sessions[key]
                self.advisor.close(key)
                self.counters["expired"] += 1

    # -- batched work --------------------------------------------------------------------
    def _fair_batch(self) -> list[PendingVerify]:
        """Up to ``max_batch`` queued verifies, taken in turns across clients (the oldest of
        each client first), so that a client with many sessions cannot fill every batch."""
        by_client: dict[bytes, collections.deque[PendingVerify]] = {}
        for item in self.pending:
            by_client.setdefault(item.session.identity, collections.deque()).append(item)
        chosen: list[PendingVerify] = []
        while len(chosen) < self.batching.max_batch and by_client:
            for identity in list(by_client):
                if len(chosen) == self.batching.max_batch:
                    break
                chosen.append(by_client[identity].popleft())
                if not by_client[identity]:
                    del by_client[identity]
        taken = {id(item) for item in chosen}
        self.pending = collections.deque(p for p in self.pending if id(p) not in taken)
        return chosen

    def _run_batch(self) -> None:
        verifies = self._fair_batch()
        streaming = self._streaming_sessions()
        streaming = streaming[: self.batching.streaming_rows(len(verifies), len(streaming))]
        rows: list[Row] = []
        work: list[tuple[Session, Proposal, PendingVerify | None]] = []
        for pending in verifies:
            committed = pending.session.committed
            rows.append(Row(pending.session.cache, [committed[-1], *pending.proposal.tokens]))
            work.append((pending.session, pending.proposal, pending))
        for session in streaming:
            proposal = Proposal([], None, None, 0.0)
            if session.mode == "fused" and session.drafter is not None:
                gamma = max(0, min(session.gamma, session.remaining - 1))
                proposal = session.drafter.propose(session.committed, gamma)
            rows.append(Row(session.cache, [session.committed[-1], *proposal.tokens]))
            work.append((session, proposal, None))
        if not rows:
            return
        started, started_cpu = time.perf_counter(), time.thread_time()
        dispatched = time.monotonic()
        logits = forward_rows(self.target.model, rows)
        outcomes = [self._decide(s, p, lg) for (s, p, _), lg in zip(work, logits, strict=True)]
        verify_ms = (time.perf_counter() - started) * 1000.0
        verify_cpu_ms = (time.thread_time() - started_cpu) * 1000.0
        self.busy.add(dispatched, dispatched + verify_ms / 1000.0)
        utilisation = self.busy.share(time.monotonic())
        widths = [len(row.tokens) for row in rows]
        peers = peer_widths(widths)
        drafted = [len(proposal.tokens) for _, proposal, _ in work]
        batch_accepted = sum(accepted for accepted, _ in outcomes)
        batch_rejected = sum(a < d for (a, _), d in zip(outcomes, drafted, strict=True))
        bases = [len(session.committed) for session, _, _ in work]
        self.advisor.batch(
            widths,
            drafted,
            [accepted for accepted, _ in outcomes],
            verify_ms,
            [(dispatched - item.queued_at) * 1000.0 for item in verifies if item.advised],
            self._active_dsd_sessions(),
        )
        for (session, proposal, item), (accepted, token), peer in zip(
            work, outcomes, peers, strict=True
        ):
            emitted = self._commit(session, proposal, accepted, token)
            if item is not None:
                session.next_round += 1
                t_send = time.time()
                hint = None
                if item.advised:
                    key = (session.identity, session.sid)
                    hint = self.advisor.verdict(key, t_send * 1000.0, session.done) or None
                verdict = Verdict(
                    session=session.sid,
                    round=item.round,
                    accepted=accepted,
                    token=token,
                    done=session.done,
                    queue_ms=(dispatched - item.queued_at) * 1000.0,
                    batch_size=len(rows),
                    verify_ms=verify_ms,
                    t_recv=item.t_recv,
                    t_send=t_send,
                    batch_width=max(widths),
                    peer_width=peer,
                    batch_accepted=batch_accepted,
                    batch_rejected=batch_rejected,
                    utilisation=utilisation,
                    gamma_hint=hint,
                )
                self._reply(session.identity, verdict.wire())
            else:
                self._reply(
                    session.identity,
                    protocol.tokens_message(
                        session.sid,
                        emitted,
                        session.done,
                        len(proposal.tokens),
                        accepted,
                        len(rows),
                        verify_ms + proposal.draft_ms,
                        time.time(),
                    ),
                )
        for (session, _, _), base, (accepted, _) in zip(work, bases, outcomes, strict=True):
            self._roll_back(session, base, accepted)
        self.log.write(
            "batch",
            t=time.time(),
            batch_size=len(rows),
            tokens=sum(len(r.tokens) for r in rows),
            verify_ms=verify_ms,
            verify_cpu_ms=verify_cpu_ms,  # apart from wall time: what the process computed
        )

    def _decide(
        self, session: Session, proposal: Proposal, logits: torch.Tensor
    ) -> tuple[int, int]:
        if session.params.greedy:
            return greedy_verify(proposal.tokens, logits)
        probs = target_probs(logits, session.params)
        if not proposal.tokens:
            return 0, int(torch.multinomial(probs[0], 1, generator=session.generator))
        # a sampled proposal carries its draft distribution (``_verify`` refuses one without)
        assert proposal.q_ids is not None and proposal.q_probs is not None
        return stochastic_verify(
            proposal.tokens, proposal.q_ids, proposal.q_probs, probs, session.generator
        )

    def _commit(self, session: Session, proposal: Proposal, accepted: int, token: int) -> list[int]:
        """Append the round's tokens; the cache is rolled back later, by ``_roll_back``."""
        emitted, session.done = truncate_emitted(
            [*proposal.tokens[:accepted], token], session.remaining, self._eos(session)
        )
        session.committed.extend(emitted)
        session.last_seen = time.monotonic()
        return emitted

    @staticmethod
    def _roll_back(session: Session, base: int, accepted: int) -> None:
        """Drop the cache entries of rejected drafts (``base``: committed length before the round).

        Runs after the replies are sent: a crop costs ~0.3 ms on a 30-layer model here and
        nobody waits on it, since the session's next verify needs the edge's next draft first.
        """
        crop_to(session.cache, base + accepted)
        if session.drafter is not None:
            session.drafter.accept(accepted)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bind", default="tcp://127.0.0.1:5555", help="ZeroMQ endpoint to bind")
    parser.add_argument("--model", default=DEFAULT_TARGET, help="target model spec")
    parser.add_argument("--draft", help="draft spec for fused mode (e.g. int8); off by default")
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    parser.add_argument("--dtype", default="float32", help="float32, bfloat16 or float16")
    parser.add_argument("--threads", type=positive_int, default=1, help="torch intra-op threads")
    parser.add_argument("--cpus", help="pin to these CPUs, e.g. 1 or 0-1")
    parser.add_argument(
        "--max-batch", type=positive_int, default=8, help="largest verification batch"
    )
    defaults = ServerLimits()
    parser.add_argument(
        "--max-sessions",
        type=positive_int,
        default=defaults.max_sessions,
        help="open sessions in all (default: %(default)s)",
    )
    parser.add_argument(
        "--max-sessions-per-client",
        type=positive_int,
        default=defaults.max_sessions_per_client,
        help="open sessions of one client (default: %(default)s)",
    )
    parser.add_argument(
        "--max-context",
        type=positive_int,
        help="tokens of prompt + output per session (default: the model's context)",
    )
    parser.add_argument(
        "--max-message-bytes",
        type=positive_int,
        default=defaults.max_message_bytes,
        help="largest message read (default: %(default)s)",
    )
    parser.add_argument(
        "--max-wait-ms",
        type=non_negative_float,
        default=5.0,
        help="longest a verify request waits for others to batch with",
    )
    parser.add_argument(
        "--session-timeout",
        type=positive_float,
        default=DEFAULT_SESSION_TIMEOUT_S,
        help="free a session whose edge is silent this long (s)",
    )
    parser.add_argument(
        "--spin-ms",
        type=non_negative_float,
        default=0.0,
        help="busy-poll this long before blocking (lower latency, burns CPU)",
    )
    parser.add_argument("--log", help="JSONL event log to append to")
    parser.add_argument("--seed", type=int, default=0, help="seed for tiny/perturbed models")
    parser.add_argument(
        "--speed-probe",
        action="store_true",
        help=SPEED_PROBE_HELP,
    )
    parser.add_argument(
        "--curve-secret",
        type=Path,
        help="CURVE on: this server's NAME.key_secret (python -m runtime.security keygen)",
    )
    parser.add_argument(
        "--curve-allow",
        type=Path,
        help="with --curve-secret: the folder of client public keys (*.key) let in",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if (args.curve_secret is None) != (args.curve_allow is None):
        print("target: error: CURVE needs both --curve-secret and --curve-allow", flush=True)
        return 2
    security = ServerSecurity(args.curve_secret, args.curve_allow) if args.curve_secret else None
    try:
        configure(args.threads, parse_cpus(args.cpus))
        batching = BatchingPolicy(args.max_batch, args.max_wait_ms)
        target = load_model(args.model, args.device, args.dtype, args.seed)
        draft = (
            make_draft(args.draft, target, args.device, args.dtype, args.seed)
            if args.draft
            else None
        )
        log = EventLog(args.log, "target")
        if args.speed_probe:
            log.write("speed", **speed_probe(target, "target"), at="start")
        server = TargetServer(
            target,
            args.bind,
            batching,
            log,
            draft,
            args.session_timeout,
            spin_ms=args.spin_ms,
            security=security,
            limits=ServerLimits(
                args.max_sessions,
                args.max_sessions_per_client,
                args.max_context,
                args.max_message_bytes,
            ),
        )
    except (ModelError, ValueError, zmq.ZMQError) as exc:
        print(f"target: error: {exc}", flush=True)
        return 2
    signal.signal(signal.SIGTERM, lambda *_: server.stop())
    signal.signal(signal.SIGINT, lambda *_: server.stop())
    print(
        f"target: serving {target.name} on {server.endpoint} "
        f"(threads={args.threads}, max_batch={args.max_batch})",
        flush=True,
    )

    def probe_at_end() -> None:
        """A probe when the run is over too: the simulation of the run takes the mean of both."""
        if args.speed_probe:
            log.write("speed", **speed_probe(target, "target"), at="end")

    server.serve(probe_at_end)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
