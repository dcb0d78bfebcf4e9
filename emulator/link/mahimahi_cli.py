"""Mahimahi command lines as a scenario's link: ``mm-delay 20 mm-loss uplink 0.01 mm-link
UP DOWN --uplink-queue=droptail --uplink-queue-args=packets=100``, pasted as it was run.

Mahimahi's shells nest: the first named is the outermost, nearest the internet (here the
cloud), and the program runs inside the last. So an uplink packet (edge to cloud) crosses
them from the innermost out, a downlink packet from the outermost in; ``mm-loss`` acts on
its one direction, ``mm-delay`` and ``mm-link`` on both. What the command runs inside
(after ``--`` or the shells) is DSD-Emu's edge here, and is left out.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field

from emulator.link.pipe import PipeLayout
from emulator.link.queues import QueueSpec, QueueSpecError

DIRECTION_NAMES = {"uplink": "up", "downlink": "down"}
METER_OPTIONS = (  # mm-link's live graphs: nothing to shape, accepted and left out
    "--meter-uplink",
    "--meter-downlink",
    "--meter-uplink-delay",
    "--meter-downlink-delay",
    "--meter-all",
)
VALUE_OPTIONS = tuple(
    f"--{name}-{what}" for name in DIRECTION_NAMES for what in ("log", "queue", "queue-args")
)


Shell = tuple[str, str | None, float]  # (delay | loss | link, the one direction or None, value)


class MahimahiCommandError(ValueError):
    """A Mahimahi command line this project cannot take; the message says what."""


@dataclass(frozen=True)
class MahimahiLink:
    """What a Mahimahi command line sets up, per direction (``up``, ``down``)."""

    traces: dict[str, str]  # the delivery-opportunity files, as named
    layouts: dict[str, PipeLayout]
    logs: dict[str, str] = field(default_factory=dict)  # the log files, as named
    once: bool = False
    command_line: str = ""


def split_form(mm_link: str, mm_delay: float | None, mm_loss: dict[str, float]) -> str:
    """The command line the scenario's split keys stand for: ``mm-delay`` outermost, then
    ``mm-loss`` (uplink, then downlink), then ``mm-link``, as Mahimahi's documentation
    nests them."""
    shells = [] if mm_delay is None else [f"mm-delay {mm_delay:g}"]
    shells += [f"mm-loss {name} {rate:g}" for name, rate in mm_loss.items()]
    return " ".join([*shells, f"mm-link {mm_link}"])


def parse_command(command: str) -> MahimahiLink:
    """Parse ``mm-delay``, ``mm-loss`` and ``mm-link`` shells, outermost first."""
    try:
        tokens = shlex.split(command)
    except ValueError as exc:
        raise MahimahiCommandError(f"cannot split {command!r}: {exc}") from exc
    shells: list[Shell] = []
    link: _LinkOptions | None = None
    position = 0
    while position < len(tokens):
        shell = tokens[position]
        if shell == "--":
            break
        if shell == "mm-delay":
            delay = _number(tokens, position + 1, "mm-delay DELAY_MS", 0, 1e6)
            shells.append(("delay", None, delay))
            position += 2
        elif shell == "mm-loss":
            name = tokens[position + 1] if position + 1 < len(tokens) else ""
            if name not in DIRECTION_NAMES:
                raise MahimahiCommandError(f"mm-loss: expected uplink or downlink, got {name!r}")
            rate = _number(tokens, position + 2, "mm-loss uplink|downlink RATE", 0, 1)
            shells.append(("loss", DIRECTION_NAMES[name], rate))
            position += 3
        elif shell == "mm-link":
            if link is not None:
                raise MahimahiCommandError("one mm-link per link")
            link, position = _parse_link(tokens, position + 1)
            shells.append(("link", None, 0.0))
        elif shell.startswith("mm-"):
            raise MahimahiCommandError(
                f"{shell} is not taken here (mm-delay, mm-loss and mm-link are)"
            )
        else:
            break  # the program run inside the shells: the edge, here
    if link is None:
        raise MahimahiCommandError("needs an mm-link UPLINK DOWNLINK (the delivery traces)")
    return MahimahiLink(
        traces=link.traces,
        layouts={d: _layout(shells, d, link.queues[d], link.once) for d in ("up", "down")},
        logs=link.logs,
        once=link.once,
        command_line=command.strip(),
    )


@dataclass
class _LinkOptions:
    traces: dict[str, str]
    queues: dict[str, QueueSpec]
    logs: dict[str, str]
    once: bool


def _parse_link(tokens: list[str], position: int) -> tuple[_LinkOptions, int]:
    """mm-link's two trace files and its options; returns them and where they end."""
    files: list[str] = []
    options: dict[str, str] = {}
    once = False
    while position < len(tokens):
        token = tokens[position]
        if token.startswith("--") and token != "--":
            name, equals, value = token.partition("=")
            if name == "--once":
                once = True
            elif name in VALUE_OPTIONS:
                if not equals:
                    if position + 1 >= len(tokens):
                        raise MahimahiCommandError(f"mm-link: {name} needs a value")
                    position += 1
                    value = tokens[position]
                options[name] = value
            elif name not in METER_OPTIONS:
                raise MahimahiCommandError(f"mm-link: unknown option {name}")
        elif len(files) < 2:
            files.append(token)
        else:
            break
        position += 1
    if len(files) < 2:
        raise MahimahiCommandError("mm-link: needs UPLINK and DOWNLINK trace files")
    queues, logs = {}, {}
    for name, direction in DIRECTION_NAMES.items():
        kind = options.get(f"--{name}-queue")
        arguments = options.get(f"--{name}-queue-args")
        if kind is None and arguments is not None:
            raise MahimahiCommandError(f"mm-link: --{name}-queue-args without --{name}-queue")
        try:
            queues[direction] = QueueSpec.from_mahimahi(kind or "infinite", arguments or "")
        except QueueSpecError as exc:
            raise MahimahiCommandError(f"mm-link --{name}-queue: {exc}") from exc
        if f"--{name}-log" in options:
            logs[direction] = options[f"--{name}-log"]
    traces = {"up": files[0], "down": files[1]}
    return _LinkOptions(traces, queues, logs, once), position


def _layout(shells: list[Shell], direction: str, queue: QueueSpec, once: bool) -> PipeLayout:
    """One direction's stages in the order its packets cross the shells."""
    order = reversed(shells) if direction == "up" else iter(shells)
    stages: list[tuple[str, float | None]] = []
    for kind, only, value in order:
        if kind == "link":
            stages.append(("link", None))
        elif only is None or only == direction:
            stages.append((kind, value))
    return PipeLayout(tuple(stages), queue, once)


def _number(tokens: list[str], position: int, usage: str, low: float, high: float) -> float:
    try:
        value = float(tokens[position])
    except (IndexError, ValueError):
        raise MahimahiCommandError(f"expected {usage}") from None
    if not low <= value <= high:
        raise MahimahiCommandError(f"{usage}: {value:g} is outside {low:g} to {high:g}")
    return value
