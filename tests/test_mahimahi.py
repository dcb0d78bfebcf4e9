"""A Mahimahi user's link as they wrote it: mm-link/mm-delay/mm-loss command lines, separate
uplink and downlink files, and packet logs in Mahimahi's format read back independently."""

from __future__ import annotations

import random
import re
from pathlib import Path

import numpy as np
import pytest

from emulator.link.mahimahi_cli import MahimahiCommandError, parse_command
from emulator.link.mahimahi_log import MahimahiLog
from emulator.link.pipe import PipeLayout
from emulator.link.queues import QueueSpec
from emulator.scenario import ScenarioError, load_scenario

ROOT = Path(__file__).resolve().parents[1]


def write_traces(folder: Path) -> None:
    """Uplink: one opportunity every 2 ms; downlink: one every ms (names as users give)."""
    (folder / "slow.trace").write_text("\n".join(str(t) for t in range(2, 1001, 2)) + "\n")
    (folder / "fast.trace").write_text("\n".join(str(t) for t in range(1, 1001)) + "\n")


def scenario_with_link(folder: Path, link: str) -> Path:
    """The default scenario, its edges' link replaced by ``link`` (YAML flow mapping)."""
    text = (ROOT / "topologies" / "default.yaml").read_text()
    text = text.replace("../traces/", str(ROOT / "traces") + "/")
    text = re.sub(r"link: \{trace: [^}]*\}", f"link: {link}", text)
    path = folder / f"scenario{abs(hash(link))}.yaml"
    path.write_text(text)
    return path


def link_of(folder: Path, link: str):
    return load_scenario(scenario_with_link(folder, link)).edges[0].link


def test_an_mm_link_command_is_the_same_link_as_the_long_form(tmp_path) -> None:
    write_traces(tmp_path)
    mm = link_of(
        tmp_path,
        "{mm_link: 'slow.trace fast.trace --uplink-queue=droptail "
        "--uplink-queue-args=packets=100'}",
    )
    long = link_of(
        tmp_path,
        "{up: 'mahimahi:slow.trace', down: 'mahimahi:fast.trace', packet_exact: true, "
        "queue: {up: {kind: droptail, packets: 100}, down: {kind: infinite}}}",
    )
    assert mm.packet_exact and long.packet_exact
    for direction in ("up", "down"):
        assert mm.layout(direction) == long.layout(direction)
        assert np.array_equal(
            mm.trace.deliveries_ms[direction], long.trace.deliveries_ms[direction]
        )
    assert mm.layout("up").queue == QueueSpec("droptail", packets=100)
    assert mm.layout("down").queue == QueueSpec.infinite()  # Mahimahi's default
    assert mm.per_packet  # the simulator follows it packet by packet


def test_the_split_keys_are_the_command_nested_as_mahimahi_documents(tmp_path) -> None:
    write_traces(tmp_path)
    split = link_of(
        tmp_path,
        "{mm_link: 'slow.trace fast.trace --once --downlink-log=down.log', mm_delay: 20, "
        "mm_loss: {uplink: 0.01}}",
    )
    whole = link_of(
        tmp_path,
        "{mahimahi: 'mm-delay 20 mm-loss uplink 0.01 mm-link slow.trace fast.trace --once "
        "--downlink-log=down.log -- ./client.sh'}",
    )
    for direction in ("up", "down"):
        assert split.layout(direction) == whole.layout(direction)
    # an uplink packet leaves the innermost shell first, a downlink packet enters the outermost
    assert split.layout("up").stages == (("link", None), ("loss", 0.01), ("delay", 20.0))
    assert split.layout("down").stages == (("delay", 20.0), ("link", None))
    assert split.once and split.layout("up").once and split.logs == {"down": "down.log"}


@pytest.mark.parametrize(
    ("command", "message"),
    [
        ("mm-delay 20", "needs an mm-link"),
        ("mm-link only-one.trace", "needs UPLINK and DOWNLINK"),
        ("mm-onoff uplink 1 1 mm-link a b", "mm-onoff is not taken here"),
        ("mm-loss sideways 0.1 mm-link a b", "expected uplink or downlink"),
        ("mm-loss uplink 2 mm-link a b", "outside 0 to 1"),
        ("mm-link a b --uplink-queue=codel", "needs a limit"),
        ("mm-link a b --uplink-queue-args=packets=5", "without --uplink-queue"),
        ("mm-link a b --fast", "unknown option --fast"),
    ],
)
def test_mahimahi_commands_it_cannot_take_are_refused_saying_why(command, message) -> None:
    with pytest.raises(MahimahiCommandError, match=message):
        parse_command(command)


def test_scenario_errors_name_the_key_and_the_file(tmp_path) -> None:
    write_traces(tmp_path)
    with pytest.raises(ScenarioError, match=r"link\.mm_link: .*unknown option --fast"):
        link_of(tmp_path, "{mm_link: 'slow.trace fast.trace --fast'}")
    with pytest.raises(ScenarioError, match=r"link\.mm_link: .*missing\.trace"):
        link_of(tmp_path, "{mm_link: 'slow.trace missing.trace'}")
    with pytest.raises(ScenarioError, match=r"queue\.kind: .*unknown queue 'red'"):
        link_of(tmp_path, "{trace: 'mahimahi:slow.trace', queue: {kind: red, packets: 5}}")
    csv = str(ROOT / "traces" / "lte-like.csv")
    with pytest.raises(ScenarioError, match=r"the downlink \(" + re.escape(csv)):
        link_of(tmp_path, f"{{up: 'mahimahi:slow.trace', down: '{csv}', packet_exact: true}}")


def test_separate_files_keep_each_direction_s_opportunities(tmp_path) -> None:
    write_traces(tmp_path)
    link = link_of(
        tmp_path, "{up: 'mahimahi:slow.trace', down: 'mahimahi:fast.trace', packet_exact: true}"
    )
    assert len(link.trace.deliveries_ms["up"]) == 500
    assert len(link.trace.deliveries_ms["down"]) == 1000
    up, down = (np.nanmean(getattr(link.trace, d)["rate_mbps"]) for d in ("up", "down"))
    assert up == pytest.approx(6.0, rel=0.01) and down == pytest.approx(12.0, rel=0.01)


def read_mahimahi_log(path: Path) -> dict:
    """An independent reader of Mahimahi's log format (as mm-throughput-graph reads it)."""
    base = None
    events: dict[str, list[list[int]]] = {"+": [], "-": [], "#": [], "d": []}
    for line in path.read_text().splitlines():
        if line.startswith("# base timestamp: "):
            assert base is None, "base timestamp multiply defined"
            base = int(line.split(": ")[1])
            continue
        if line.startswith("#"):
            continue
        fields = line.split()
        assert fields[0].isdigit() and fields[1] in events, line
        values = [int(fields[0]), *map(int, fields[2:])]
        if fields[1] == "-":
            assert values[2] >= 0 and values[0] - values[2] >= 0, line
        events[fields[1]].append(values)
    assert base is not None, "logfile is missing base timestamp"
    return {"base": base, **events}


def test_a_packet_log_reads_back_with_every_packet_and_byte(tmp_path) -> None:
    """A saturating burst through a drop-tail queue of 20 on 1-ms opportunities: the log
    holds every arrival, departure and drop with their bytes, and the capacity."""
    log = MahimahiLog(
        tmp_path / "up.log",
        "Uplink",
        "fast.trace",
        "droptail [packets=20]",
        "mm-link fast.trace fast.trace",
        zero_ms=1000.0,
        init_epoch_ms=1_700_000_000_000,
        base_ms=1000.0,
    )
    layout = PipeLayout((("link", None),), QueueSpec("droptail", packets=20))
    pipe = layout.build(random.Random(0), log)
    pipe.use_deliveries(np.arange(1, 101, dtype=float), 1000.0)
    rng = random.Random(1)
    sizes = [rng.randint(40, 1500) for _ in range(200)]
    sent, dropped, delivered = 0, [], []
    for index, size in enumerate(sizes):
        t = 1000.0 + index * 0.25
        pipe.send((t, size, index), dropped)
        sent += size
        delivered += pipe.advance(t)[0]
    delivered += pipe.advance(1100.5)[0]  # one period of the schedule
    log.close()
    read = read_mahimahi_log(tmp_path / "up.log")
    assert read["base"] == 0
    assert len(read["+"]) == 200 and sum(e[1] for e in read["+"]) == sent
    assert len(read["-"]) == len(delivered) and sum(e[1] for e in read["-"]) == sum(
        p[1] for p in delivered
    )
    assert sum(e[1] for e in read["d"]) == len(dropped) > 0
    assert sum(e[2] for e in read["d"]) == sum(p[1] for p in dropped)
    assert len(read["#"]) == 100  # every opportunity of the trace, used or not
    assert [e[0] for e in read["-"]] == sorted(int(p[0] - 1000.0) for p in delivered)
