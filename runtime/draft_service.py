"""The shared real draft: proposals for emulated edges whose text left the replay tables.

One process holds the real draft model and answers every emulated edge of a run
(``runtime.replay_draft``) over a local socket (``ipc://``, outside the emulated network:
its time is not the edge's, which spends the profile's draft time whatever this took).
Per request key it keeps a ``DraftState`` as the edge's own draft would: a new key is
prefilled with all but the last committed token, and each proposal keeps the cached
positions that still agree with the committed text.

Run: ``python -m runtime.draft_service --bind ipc:///PATH [--draft int8] [--cpus 0]``
"""

from __future__ import annotations

import argparse
import collections
import sys
import time
from typing import Any

import msgpack
import zmq

from runtime.arguments import positive_int
from runtime.drafting import DraftState
from runtime.events import EventLog
from runtime.model_names import DEFAULT_DRAFT, DEFAULT_TARGET
from runtime.models import LoadedModel, ModelError, load_model, make_draft
from runtime.process import configure, parse_cpus, resource_report, stop_on_signals
from runtime.sampling import SamplingParams

KEEP_KEYS = 256  # requests remembered at once; the least recently asked is forgotten first


def common_prefix(first: list[int], second: list[int]) -> int:
    length = 0
    for a, b in zip(first, second, strict=False):
        if a != b:
            break
        length += 1
    return length


class SharedDraft:
    """The draft states of every request that asked, least recently asked first."""

    def __init__(self, draft: LoadedModel, keep: int = KEEP_KEYS) -> None:
        self.draft = draft
        self.keep = keep
        self.states: collections.OrderedDict[str, tuple[DraftState, list[int]]] = (
            collections.OrderedDict()
        )

    def propose(self, key: str, committed: list[int], gamma: int) -> list[int]:
        if not committed or gamma < 1:
            raise ValueError("a proposal needs committed tokens and a window of at least 1")
        if key in self.states:
            state, cached = self.states.pop(key)
        else:
            state = DraftState(self.draft, SamplingParams(), seed=0)
            state.prefill(committed[:-1])
            cached = committed[:-1]
        # the positions that hold committed tokens; at least the last one is fed again
        state.valid = min(common_prefix(cached, committed), len(committed) - 1)
        tokens = state.propose(committed, gamma).tokens
        self.states[key] = (state, [*committed, *tokens[:-1]])
        while len(self.states) > self.keep:
            self.states.popitem(last=False)
        return tokens

    def forget(self, key: str) -> None:
        self.states.pop(key, None)


def answer(shared: SharedDraft, message: Any) -> dict[str, Any]:
    """One request's reply; a malformed one is answered with an error, never fatal."""
    if not isinstance(message, dict):
        return {"error": "expected a mapping"}
    try:
        if message.get("op") == "propose":
            ids = [int(i) for i in message["ids"]]
            return {"tokens": shared.propose(str(message["key"]), ids, int(message["gamma"]))}
        if message.get("op") == "forget":
            shared.forget(str(message["key"]))
            return {"ok": True}
    except (KeyError, TypeError, ValueError) as exc:
        return {"error": f"bad request: {exc}"}
    return {"error": f"unknown op {message.get('op')!r}"}


def serve(socket: zmq.Socket, shared: SharedDraft, log: EventLog) -> None:
    while True:
        frames = socket.recv_multipart()
        if len(frames) != 3:  # not a REQ socket's envelope: nothing to answer
            continue
        identity, empty, frame = frames
        started = time.perf_counter()
        try:
            message = msgpack.unpackb(frame, raw=False)
        except (ValueError, msgpack.UnpackException):
            message = None
        reply = answer(shared, message)
        if isinstance(message, dict) and message.get("op") == "propose":
            log.write(
                "fallback",
                key=message.get("key"),
                gamma=message.get("gamma"),
                ms=(time.perf_counter() - started) * 1000.0,
                **({"error": reply["error"]} if "error" in reply else {}),
            )
        socket.send_multipart([identity, empty, msgpack.packb(reply)])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bind", required=True, help="endpoint, e.g. ipc:///run/x.sock")
    parser.add_argument("--base", default=DEFAULT_TARGET, help="model the draft is derived from")
    parser.add_argument("--draft", default=DEFAULT_DRAFT, help="draft spec (int8, bf16, ...)")
    parser.add_argument("--threads", type=positive_int, default=1)
    parser.add_argument("--cpus", help="pin to these CPUs, e.g. 0")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--log", help="JSONL event log")
    args = parser.parse_args(argv)
    stop_on_signals()
    log = EventLog(args.log, "draft-service")
    try:
        configure(args.threads, parse_cpus(args.cpus))
        base = load_model(args.base, "cpu", "float32", args.seed)
        shared = SharedDraft(make_draft(args.draft, base, "cpu", "float32", args.seed))
        socket: zmq.Socket = zmq.Context.instance().socket(zmq.ROUTER)
        socket.setsockopt(zmq.LINGER, 0)
        socket.bind(args.bind)
    except (ModelError, ValueError, OSError, zmq.ZMQError) as exc:
        print(f"draft service: error: {exc}", file=sys.stderr)
        return 2
    print("draft service: serving", flush=True)
    try:
        serve(socket, shared, log)
    except KeyboardInterrupt:
        pass
    finally:
        log.write("process", t=time.time(), events=log.written, **resource_report("draft-service"))
        log.close()
        socket.close(0)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
