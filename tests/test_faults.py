"""Faults the runtime must survive, made for real: a drafter or the target killed by its PID
in the middle of a request, a request past its deadline (the tiny models, real sockets and
processes on loopback)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from emulator.chaos.ledger import lost_events
from emulator.chaos.runtime_faults import free_port
from runtime.draft import DeadlineExceeded, EdgeClient, EdgeSettings, ServerError
from runtime.events import EventLog, read_events
from runtime.policies import Fixed
from runtime.reference import generate_greedy
from runtime.serverproc import ServerProcess
from tests.cli import ROOT


@pytest.mark.slow
def test_a_drafter_killed_mid_request_is_freed_and_the_others_go_on(
    tiny_target, tiny_draft, start_server
) -> None:
    server = start_server(tiny_target, session_timeout_s=1.0)
    victim = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "runtime.draft",
            "--connect",
            server.endpoint,
            "--base",
            "tiny",
            "--draft",
            "perturbed:0.1",
            "--edge",
            "victim",
            "--requests",
            "1000",
            "--max-new-tokens",
            "200",
            "--ignore-eos",
        ],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    while not any(sid.startswith("victim") for _, sid in list(server.sessions)):
        assert time.monotonic() < deadline and victim.poll() is None, "the drafter never opened"
        time.sleep(0.01)
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait(timeout=10)
    orphaned = [key for key in list(server.sessions) if key[1].startswith("victim")]
    assert orphaned  # killed mid-request: its session is still held
    results: list[int] = []

    def survivor() -> None:
        settings = EdgeSettings("survivor", Fixed(3), timeout_s=30)
        client = EdgeClient(server.endpoint, tiny_draft, settings)
        results.append(len(client.request(tiny_target.encode_prompt("still here"), 24).output_ids))
        client.close()

    thread = threading.Thread(target=survivor)
    thread.start()
    thread.join(timeout=60)
    assert results == [24]  # the others are unaffected
    deadline = time.monotonic() + 10
    while any(key in server.sessions for key in orphaned) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(key in server.sessions for key in orphaned)  # its session and KV are freed
    assert server.counters["expired"] >= len(orphaned)


@pytest.mark.slow
def test_a_drafter_stopped_by_sigterm_logs_the_request_it_cut_and_every_event(
    tiny_target, start_server, tmp_path
) -> None:
    """What the emulator does to its edges at Ctrl-C: the cut request is logged as failed
    with "interrupted", and the process record accounts for every event and request."""
    server = start_server(tiny_target)
    log = tmp_path / "edge.jsonl"
    drafter = subprocess.Popen(
        [
            *(sys.executable, "-m", "runtime.draft", "--connect", server.endpoint),
            *("--base", "tiny", "--draft", "perturbed:0.1", "--edge", "stopped"),
            *("--requests", "5", "--max-new-tokens", "300", "--ignore-eos", "--log", str(log)),
        ],
        cwd=ROOT,
    )
    deadline = time.monotonic() + 120
    while not (log.exists() and any(e["event"] == "round" for e in read_events(log))):
        assert time.monotonic() < deadline and drafter.poll() is None, "no round was verified"
        time.sleep(0.02)
    drafter.terminate()
    assert drafter.wait(timeout=30) == 130
    events = read_events(log)
    requests = [e for e in events if e["event"] == "request"]
    (process,) = [e for e in events if e["event"] == "process"]
    assert requests[-1]["error"] == "interrupted"
    assert process["requests_started"] == len(requests)
    assert process["events"] == len(events) - 1
    assert lost_events([log]) == (0, [])


WRITER = """
import sys
from runtime.events import EventLog
from runtime.process import stop_on_signals
stop_on_signals()
log = EventLog(sys.argv[1], "writer")
payload = [index / 7 for index in range(2000)]  # serialising it takes about as long as a write
try:
    while True:
        log.write("round", n=log.written, payload=payload)
except KeyboardInterrupt:
    log.write("process", events=log.written)
"""


def test_an_event_log_stopped_mid_write_holds_every_event_it_counted(tmp_path) -> None:
    """SIGTERM lands wherever the writer is: often between counting a record and writing it,
    when it is written nonstop. Every stop must leave the count and the log agreeing."""
    for attempt in range(12):
        log = tmp_path / f"writer{attempt}.jsonl"
        writer = subprocess.Popen([sys.executable, "-c", WRITER, str(log)], cwd=ROOT)
        deadline = time.monotonic() + 60
        while not (log.exists() and log.stat().st_size > 2_000_000):
            assert time.monotonic() < deadline and writer.poll() is None, "the writer wrote nothing"
            time.sleep(0.01)
        writer.terminate()
        assert writer.wait(timeout=30) == 0
        assert lost_events([log]) == (0, []), f"attempt {attempt}"
        *rounds, process = read_events(log)
        assert process["events"] == len(rounds), f"attempt {attempt}"


def test_a_request_past_its_deadline_fails_plainly_and_frees_its_session(
    tiny_target, tiny_draft, start_server
) -> None:
    server = start_server(tiny_target)
    client = EdgeClient(
        server.endpoint, tiny_draft, EdgeSettings("hurried", Fixed(2), deadline_s=0.05)
    )
    prompt = tiny_target.encode_prompt("a long answer, please")
    with pytest.raises(DeadlineExceeded, match=r"deadline of 0.05 s passed after \d+ tokens"):
        client.request(prompt, 2000)
    deadline = time.monotonic() + 10
    while server.sessions and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not server.sessions  # closed by the client, not left to the timeout
    patient = EdgeClient(
        server.endpoint, tiny_draft, EdgeSettings("patient", Fixed(2), deadline_s=60)
    )
    assert len(patient.request(prompt, 16).output_ids) == 16
    client.close()
    patient.close()


def test_a_deadline_that_expires_while_waiting_is_never_reported_as_a_timeout(tiny_draft) -> None:
    """Waits are rounded to whole milliseconds: the error must still name the deadline."""
    client = EdgeClient(
        "tcp://127.0.0.1:9", tiny_draft, EdgeSettings("late", Fixed(2), deadline_s=0.03)
    )
    for _ in range(30):
        with pytest.raises(DeadlineExceeded):
            client.request([1, 2, 3], 8)
    client.close()


@pytest.mark.slow
def test_a_restarted_target_is_found_again_and_the_request_resumes_losslessly(
    tiny_target, tiny_draft, tmp_path
) -> None:
    """The target is killed by its PID mid-request and started again on the same port: the
    edge notices within its reply timeout, re-opens the session with what was committed,
    and the output is still the target's own greedy continuation."""
    port = free_port()
    args = ["--model", "tiny", "--threads", "1", "--bind", f"tcp://127.0.0.1:{port}"]
    prompt = tiny_target.encode_prompt("across a restart")
    tokens = 600
    outcome: dict[str, object] = {}
    log = EventLog(None, "edge", keep=True)
    with ServerProcess(args) as first:
        settings = EdgeSettings("edge", Fixed(3), log=log, timeout_s=2, retries=8, backoff_s=0.2)
        client = EdgeClient(first.endpoint, tiny_draft, settings)

        def request() -> None:
            try:
                outcome["result"] = client.request(prompt, tokens)
            except ServerError as exc:
                outcome["error"] = str(exc)

        thread = threading.Thread(target=request)
        thread.start()
        deadline = time.monotonic() + 60
        while sum(e["event"] == "round" for e in log.events) < 5:  # mid-request, on any CPU
            assert time.monotonic() < deadline and thread.is_alive(), "no round was verified"
            time.sleep(0.002)
        os.kill(first.process.pid, signal.SIGKILL)
        first.process.wait(timeout=10)
    with ServerProcess(args):
        thread.join(timeout=120)
    client.close()
    assert "error" not in outcome, outcome.get("error")
    result = outcome["result"]
    assert result.resumed >= 1
    assert result.output_ids == generate_greedy(tiny_target, prompt, tokens)
