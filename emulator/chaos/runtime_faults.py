"""Faults of the runtime on loopback, made for real with the tiny model pair: processes
killed by PID, a target restarted on its port, deadlines, 10,000 fuzzed messages, clients
without the right CURVE keys, malformed traces and scenario files."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import zmq

from emulator.chaos.context import ROOT, SESSION_TIMEOUT_S, Chaos, Outcome
from emulator.chaos.files import fuzz_scenarios, fuzz_traces
from emulator.chaos.fuzz import fuzz, send_oversized, valid_messages
from runtime import protocol
from runtime.draft import DeadlineExceeded
from runtime.events import read_events
from runtime.security import ClientSecurity, generate_keys
from runtime.serverproc import ServerProcess


def stop_target(server: ServerProcess) -> tuple[bool, dict[str, int]]:
    """Stop a target we did not mean to kill; returns (whether it had crashed or exited
    badly, its counters from its ``process`` record)."""
    died_early = server.process.poll() is not None
    server.stop()
    crashed = died_early or server.process.returncode != 0
    log = server.log
    records = (
        [e for e in read_events(log) if e["event"] == "process"] if log and log.exists() else []
    )
    return crashed, (records[-1].get("counters", {}) if records else {})


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# -- the faults --------------------------------------------------------------------------
def drafter_killed(chaos: Chaos) -> Outcome:
    """A drafter SIGKILLed mid-request: another edge is served meanwhile, and the target
    frees the dead one's session (and its KV cache) after the session timeout."""
    server = chaos.start_target("target")
    victim = chaos.start_drafter(
        server.endpoint, "victim", "--requests", "100", "--max-new-tokens", "400"
    )
    rounds = chaos.wait_for_round("victim", victim)
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait(timeout=10)
    served = chaos.request(server.endpoint, "still here", 24, timeout_s=30)
    time.sleep(SESSION_TIMEOUT_S + 1.5)  # the server sweeps idle sessions once a second
    crashed, counters = stop_target(server)
    expired = counters.get("expired", 0)
    return Outcome(
        survived=len(served) == 24 and expired >= 1 and not crashed,
        details={
            "killed_after_rounds": rounds,
            "other_edge_tokens": len(served),
            "sessions_expired": expired,
        },
        server_crashes=int(crashed),
    )


def target_restarted(chaos: Chaos) -> Outcome:
    """The target SIGKILLed mid-request and started again on its port: the drafter notices
    within its reply timeout, re-opens the session with what was committed (backoff
    doubling), and its output is still exactly the target's greedy output (by transformers'
    own ``generate``)."""
    port = free_port()
    bind = ("--bind", f"tcp://127.0.0.1:{port}")
    tokens, prompt = 300, "across a restart"
    first = chaos.start_target("target-first", *bind)
    edge = chaos.start_drafter(
        first.endpoint,
        "resumer",
        *("--requests", "1", "--max-new-tokens", str(tokens), "--prompt", prompt, "--print"),
        *("--timeout", "2", "--retries", "6", "--backoff", "0.2"),
    )
    chaos.wait_for_round("resumer", edge)
    os.kill(first.process.pid, signal.SIGKILL)
    first.process.wait(timeout=10)
    killed_at = time.monotonic()
    second = chaos.start_target("target-second", *bind)
    try:
        code = edge.wait(timeout=120)
    except subprocess.TimeoutExpired:
        edge.kill()
        code = None
    back_after = time.monotonic() - killed_at
    crashed, _ = stop_target(second)
    reference = chaos.greedy_text(prompt, tokens)
    requests = [e for e in read_events(chaos.folder / "resumer.jsonl") if e["event"] == "request"]
    request = requests[-1] if requests else {}
    lossless = reference.strip() in chaos.output("resumer")
    return Outcome(
        survived=code == 0
        and request.get("resumed", 0) >= 1
        and request.get("output_tokens") == tokens
        and lossless
        and not crashed,
        details={
            "drafter_exit": code,
            "resumed_sessions": request.get("resumed", 0),
            "tokens": request.get("output_tokens"),
            "output_equals_greedy": lossless,
            "done_s_after_kill": round(back_after, 1),
        },
        server_crashes=int(crashed),
    )


def deadline(chaos: Chaos) -> Outcome:
    """A request past its deadline fails with a clear error and its session is closed at
    once (not left to the timeout); the next request is served."""
    server = chaos.start_target("target", "--session-timeout", "600")
    try:
        chaos.request(server.endpoint, "a long answer, please", 3000, deadline_s=0.2)
        error = None
    except DeadlineExceeded as exc:
        error = str(exc)
    served = chaos.request(server.endpoint, "a short one", 16)
    crashed, counters = stop_target(server)
    left_open = counters.get("opened", 0) - counters.get("closed", 0)
    return Outcome(
        survived=error is not None and len(served) == 16 and left_open == 0 and not crashed,
        details={"error": error, "next_request_tokens": len(served), "left_open": left_open},
        server_crashes=int(crashed),
    )


def protocol_fuzz(chaos: Chaos) -> Outcome:
    """10,000 random and mutated messages (and one oversized) from four sockets: the target
    answers each well formed, stays up, and serves the same output as before."""
    server = chaos.start_target("target")
    prompt = "before and after the storm"
    before = chaos.request(server.endpoint, prompt, 40)
    storm = fuzz(server.endpoint, chaos.fuzz_messages, chaos.rng.randrange(2**31))
    send_oversized(server.endpoint)
    alive = server.process.poll() is None
    after = chaos.request(server.endpoint, prompt, 40)
    crashed, counters = stop_target(server)
    errors = {k.split(":", 1)[1]: v for k, v in sorted(counters.items()) if k.startswith("error:")}
    return Outcome(
        survived=alive and not crashed and after == before and storm.malformed_replies == 0,
        details={
            "sent": storm.sent,
            "replies": storm.replies,
            "malformed_replies": storm.malformed_replies,
            "errors_by_code": errors,
            "same_output_after": after == before,
        },
        server_crashes=int(crashed),
        fuzz_messages=storm.sent,
    )


def unauthenticated(chaos: Chaos) -> Outcome:
    """A CURVE target lets in only listed client keys: a plaintext client, one with an
    unlisted key pair and one holding the wrong server key get no reply at all; a listed
    edge is served."""
    keys, allowed = chaos.folder / "keys", chaos.folder / "allowed"
    server_public, server_secret = generate_keys(keys, "server")
    generate_keys(allowed, "edge")
    _, intruder_secret = generate_keys(keys, "intruder")
    impostor_public, _ = generate_keys(keys, "impostor")
    (allowed / "edge.key_secret").rename(keys / "edge.key_secret")
    server = chaos.start_target(
        "target", "--curve-secret", str(server_secret), "--curve-allow", str(allowed)
    )
    intruders: dict[str, ClientSecurity | None] = {
        "plaintext": None,
        "unlisted_key": ClientSecurity(intruder_secret, server_public),
        "wrong_server_key": ClientSecurity(keys / "edge.key_secret", impostor_public),
    }
    answered = {name: _answered(server.endpoint, security) for name, security in intruders.items()}
    listed = ClientSecurity(keys / "edge.key_secret", server_public)
    served = chaos.request(server.endpoint, "let me in", 12, security=listed)
    crashed, _ = stop_target(server)
    accepted = sum(answered.values())
    return Outcome(
        survived=accepted == 0 and len(served) == 12 and not crashed,
        details={"answered": answered, "listed_edge_tokens": len(served)},
        server_crashes=int(crashed),
        unauthenticated_accepted=accepted,
    )


def _answered(endpoint: str, security: ClientSecurity | None, wait_ms: int = 1500) -> bool:
    """Whether the server replied to a valid ``open`` from a client with these keys."""
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    if security is not None:
        security.apply(sock)
    sock.connect(endpoint)
    try:
        sock.send(protocol.encode(valid_messages("intruder")[0]))
        return bool(sock.poll(wait_ms))
    finally:
        sock.close(0)


def malformed_files(chaos: Chaos) -> Outcome:
    """Mutated traces of every importer's format and mutated scenario files: each is read
    or refused with a clear error, none crashes a reader; the programs say it in one line."""
    folder = chaos.folder / "files"
    folder.mkdir(exist_ok=True)
    seed = chaos.rng.randrange(2**31)
    traces = fuzz_traces(folder, 60, seed)
    scenarios = fuzz_scenarios(folder, 300, seed)
    programs = _refusals(folder)
    crashes = traces.crashes + scenarios.crashes + [p for p, ok in programs.items() if not ok]
    return Outcome(
        survived=not crashes,
        details={
            "trace_files": traces.files,
            "traces_refused": traces.refused,
            "scenario_files": scenarios.files,
            "scenarios_refused": scenarios.refused,
            "programs_refusing_in_one_line": sum(programs.values()),
            "crashes": crashes[:10],
        },
    )


def _refusals(folder: Path) -> dict[str, bool]:
    """Each program, given a broken file, exits 2 with one ``error:`` line, no traceback."""
    junk = folder / "junk.down"
    junk.write_bytes(b"\x00\xff garbage\n12\n-3\n")
    bad_yaml = folder / "broken.yaml"
    bad_yaml.write_text("edges: [ {name: e, link: {constant: {delay_ms: -5}}} ]\n")
    runs: dict[str, list[str]] = {
        "trace import": ["mahimahi", str(junk), "-o", str(folder / "out.csv")],
        "trace stats": [str(junk)],
        "run": ["--scenario", str(bad_yaml), "--no-sim"],
        "simulate": [str(bad_yaml), "--no-save"],
    }
    results = {}
    for command, args in runs.items():
        done = subprocess.run(
            [sys.executable, "-m", "emulator.cli.main", *command.split(), *args],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=ROOT,
        )
        errors = [line for line in done.stderr.splitlines() if "error:" in line]
        results[command] = (
            done.returncode == 2 and len(errors) == 1 and "Traceback" not in done.stderr
        )
    return results


RUNTIME_FAULTS: dict[str, Callable[[Chaos], Outcome]] = {
    "drafter_killed": drafter_killed,
    "target_restarted": target_restarted,
    "deadline": deadline,
    "protocol_fuzz": protocol_fuzz,
    "unauthenticated": unauthenticated,
    "malformed_files": malformed_files,
}
