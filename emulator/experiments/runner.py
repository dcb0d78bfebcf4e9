"""One way to run an experiment's cases, whatever the experiment (the fidelity suite, the
window-policy evaluation, the capacity sweep's emulated points, the emulated edges' check
against real drafters): in order, each case's
record kept at once in a checkpoint written atomically, so that a crash, a failure or
Ctrl-C loses no finished case.

The failure rule is one for all: a case whose run fails (``failures``: a child run that did
not finish) is recorded with its error and the experiment goes on; the program exits 1 at
the end if any case failed. Ctrl-C stops at once and keeps what finished (exit 130)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from emulator.run.child_runs import MainJobFailed

Record = dict[str, Any]


@dataclass(frozen=True)
class Case:
    """One run of an experiment: ``key`` names its record, ``label`` is what progress says."""

    key: str
    label: str
    settings: dict[str, Any] = field(default_factory=dict)


@dataclass
class Finished:
    """What the cases left: every record by key (a failed case's holds its ``error``)."""

    records: dict[str, Record]
    failed: dict[str, str] = field(default_factory=dict)
    interrupted: bool = False

    def exit_code(self) -> int:
        return 130 if self.interrupted else 1 if self.failed else 0


def save_atomically(path: Path, document: Any) -> None:
    """Written aside, then renamed: an interrupted write leaves the previous file whole."""
    aside = path.with_name(f"{path.name}.tmp")
    aside.write_text(json.dumps(document, indent=1))
    aside.replace(path)


def run_cases(
    cases: Sequence[Case],
    run: Callable[[Case], Record],
    checkpoint: Path,
    document: Callable[[dict[str, Record]], Any],
    say: Callable[[str], None],
    done: dict[str, Record] | None = None,
    failures: Iterable[type[Exception]] = (MainJobFailed,),
) -> Finished:
    """Run every case not ``done`` already; after each, ``document(records)`` goes to the
    checkpoint. ``say`` hears each case as it starts, and each failure."""
    caught = tuple(failures)
    finished = Finished(dict(done or {}))
    try:
        for index, case in enumerate(cases, start=1):
            if case.key in finished.records:
                continue
            say(f"[{index}/{len(cases)}] {case.label}")
            try:
                finished.records[case.key] = run(case)
            except caught as exc:
                finished.records[case.key] = {"error": str(exc)}
                finished.failed[case.key] = str(exc)
                say(f"[{index}/{len(cases)}] {case.label}: failed: {exc}")
            save_atomically(checkpoint, document(finished.records))
    except KeyboardInterrupt:  # the caller says so, with where the records are
        finished.interrupted = True
    return finished
