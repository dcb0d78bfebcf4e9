"""The cloud's router: one endpoint in front of several target replicas.

Edges connect here as they would to a target (ZeroMQ DEALER to this ROUTER). Each new
session (``open``) goes to the target its router policy chooses (``runtime.routing``) and
stays there: every later message of the session goes to the same target, through a DEALER
of this router's own per edge and target, so that each target sees every edge as a peer of
its own, exactly as without a router. Frames are forwarded unchanged. A session stops
counting against its target when its edge sends ``close`` (or its target has forgotten it).

Run: ``python -m runtime.router --bind tcp://0.0.0.0:5555 --target tcp://HOST1:5555
--target tcp://HOST2:5555 [--policy jsq]``
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

import msgpack
import zmq

from runtime import protocol
from runtime.events import EventLog
from runtime.process import parse_cpus, pin, resource_report, stop_on_signals
from runtime.routing import ROUTERS, SessionTable, make_router

POLL_MS = 100


class CloudRouter:
    """Routes the sessions of every edge over ``targets`` (their endpoints)."""

    def __init__(
        self,
        bind: str,
        targets: list[str],
        policy: str,
        log: EventLog,
        seed: int = 0,
        context: zmq.Context | None = None,
    ) -> None:
        self.context = context or zmq.Context.instance()
        self.targets = targets
        self.table = SessionTable(make_router(policy, seed), len(targets), policy)
        self.log = log
        self.frontend = self.context.socket(zmq.ROUTER)
        self.frontend.setsockopt(zmq.LINGER, 0)
        self.frontend.setsockopt(zmq.MAXMSGSIZE, protocol.MAX_MESSAGE_BYTES)
        self.frontend.bind(bind)
        self.endpoint = self.frontend.getsockopt_string(zmq.LAST_ENDPOINT)
        self.poller = zmq.Poller()
        self.poller.register(self.frontend, zmq.POLLIN)
        self.backends: dict[tuple[bytes, int], zmq.Socket] = {}
        self.peers: dict[zmq.Socket, bytes] = {}  # a backend socket -> its edge's identity
        self.forwarded = 0
        self._running = True

    def stop(self) -> None:
        self._running = False

    def serve(self) -> None:
        while self._running:
            for socket, _ in self.poller.poll(POLL_MS):
                if socket is self.frontend:
                    self._from_edge(self.frontend.recv_multipart())
                else:
                    self._from_target(socket, socket.recv())

    def close(self) -> None:
        for socket in [self.frontend, *self.backends.values()]:
            socket.close(0)

    def _backend(self, identity: bytes, index: int) -> zmq.Socket:
        key = (identity, index)
        if key not in self.backends:
            socket = self.context.socket(zmq.DEALER)
            socket.setsockopt(zmq.LINGER, 0)
            socket.connect(self.targets[index])
            self.backends[key] = socket
            self.peers[socket] = identity
            self.poller.register(socket, zmq.POLLIN)
        return self.backends[key]

    def _from_edge(self, frames: list[bytes]) -> None:
        identity = frames[0]
        if len(frames) != 2:
            self._error(identity, "bad_message", f"expected one frame, got {len(frames) - 1}")
            return
        try:
            message = protocol.decode(frames[1], expect=("open", "verify", "close"))
        except protocol.ProtocolError as exc:
            self._error(identity, exc.code, str(exc))
            return
        key = _session_key(identity, message["session"])
        index = self.table.route(key, message["type"])
        if message["type"] == "open":
            event = self.table.route_event(message["session"], index)
            self.log.write("route", t=time.time(), **event)
        self._backend(identity, index).send(frames[1])
        self.forwarded += 1

    def _from_target(self, socket: zmq.Socket, frame: bytes) -> None:
        identity = self.peers[socket]
        reply = _peek(frame)
        if reply.get("type") == "error" and reply.get("code") == "unknown_session":
            self.table.close(_session_key(identity, str(reply.get("session"))))
        self.frontend.send_multipart([identity, frame])
        self.forwarded += 1

    def _error(self, identity: bytes, code: str, text: str) -> None:
        reply = {"type": "error", "code": code, "message": text, "session": None}
        self.frontend.send_multipart([identity, protocol.encode(reply)])


def _session_key(identity: bytes, session: str) -> str:
    """Sessions are the edge's: two edges may name theirs alike (the target keys them so)."""
    return f"{identity.hex()}/{session}"


def _peek(frame: bytes) -> dict[str, Any]:
    """A target's reply as a map, for its type alone (it is forwarded as it came)."""
    try:
        reply = msgpack.unpackb(frame, raw=False)
    except (ValueError, msgpack.UnpackException):
        return {}
    return reply if isinstance(reply, dict) else {}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bind", required=True, help="the edges' endpoint")
    parser.add_argument(
        "--target", action="append", required=True, help="a target's endpoint (repeat)"
    )
    parser.add_argument("--policy", default="jsq", choices=ROUTERS, help="router policy")
    parser.add_argument("--seed", type=int, default=0, help="seed of p2c's draws")
    parser.add_argument("--cpus", help="pin to these CPUs, e.g. 0")
    parser.add_argument("--log", help="JSONL event log")
    args = parser.parse_args(argv)
    stop_on_signals()
    log = EventLog(args.log, "router")
    try:
        pin(parse_cpus(args.cpus))
        router = CloudRouter(args.bind, args.target, args.policy, log, args.seed)
    except (ValueError, zmq.ZMQError) as exc:
        print(f"router: error: {exc}", file=sys.stderr)
        return 2
    print(
        f"router: serving on {router.endpoint} ({len(args.target)} targets, {args.policy})",
        flush=True,
    )
    try:
        router.serve()
    except KeyboardInterrupt:
        pass
    finally:
        log.write(
            "process",
            t=time.time(),
            events=log.written,
            sessions_per_target=router.table.opened,
            messages=router.forwarded,
            **resource_report("router"),
        )
        log.close()
        router.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
