"""Mahimahi's queue disciplines and delivery opportunities against their definitions, on a
simulated clock: the same objects the delay line and the simulator's link hold packets in."""

from __future__ import annotations

import random
import statistics

import numpy as np
import pytest

from emulator.link.pipe import LinkStage, Pipe, PipeLayout
from emulator.link.queues import PACKET_SIZE, QueueSpec, QueueSpecError


def offer(queue_spec: QueueSpec, sizes: list[int]) -> tuple[list, list]:
    """Enqueue packets (labelled by their index) at t=0 with nothing sent: (kept, dropped)."""
    queue = queue_spec.build(random.Random(0))
    dropped = []
    for index, size in enumerate(sizes):
        dropped += queue.enqueue((0.0, size, index), 0.0)
    return [p[2] for p in queue.waiting], [p[2] for p in dropped]


def test_drop_tail_drops_the_arriving_packet_at_the_limit() -> None:
    kept, dropped = offer(QueueSpec("droptail", packets=3), [100] * 5)
    assert kept == [0, 1, 2] and dropped == [3, 4]
    kept, dropped = offer(QueueSpec("droptail", packets=None, bytes=1000), [400, 400, 400, 100])
    assert kept == [0, 1, 3] and dropped == [2]  # a small one still fits after a big one fell


def test_drop_head_drops_from_the_head_at_the_limit() -> None:
    kept, dropped = offer(QueueSpec("drophead", packets=3), [100] * 5)
    assert kept == [2, 3, 4] and dropped == [0, 1]
    kept, dropped = offer(QueueSpec("drophead", packets=None, bytes=1000), [400, 400, 400, 100])
    assert kept == [1, 2, 3] and dropped == [0]


def test_infinite_keeps_everything_and_limited_kinds_need_a_limit() -> None:
    kept, dropped = offer(QueueSpec.infinite(), [1500] * 10_000)
    assert len(kept) == 10_000 and dropped == []
    for kind in ("droptail", "drophead", "codel", "pie"):
        with pytest.raises(QueueSpecError, match="needs a limit"):
            QueueSpec(kind, packets=None)


def test_mahimahi_queue_arguments_are_read_as_mm_link_takes_them() -> None:
    spec = QueueSpec.from_mahimahi("codel", "packets=1000, target=5, interval=100")
    assert spec == QueueSpec("codel", packets=1000, target_ms=5.0, interval_ms=100.0)
    assert spec.describe() == "codel [packets=1000, target=5, interval=100]"
    assert QueueSpec.from_mahimahi("droptail", "bytes=30000").describe() == (
        "droptail [bytes=30000]"
    )
    with pytest.raises(QueueSpecError, match="unknown argument 'target'"):
        QueueSpec.from_mahimahi("droptail", "packets=10,target=5")
    with pytest.raises(QueueSpecError, match="NAME=NUMBER"):
        QueueSpec.from_mahimahi("pie", "packets=ten")
    with pytest.raises(QueueSpecError, match="unknown queue 'red'"):
        QueueSpec.from_mahimahi("red", "")


def serve(spec: QueueSpec, source, seconds: float, mbps: float = 12.0, seed: int = 1) -> dict:
    """Run ``source`` into a link of ``mbps`` for ``seconds``; sojourn times after the first
    quarter, the drop times, and the delivered rate."""
    link = LinkStage(spec, random.Random(seed))
    link.set_rate(mbps, 0.0)
    pipe = Pipe([link])
    delivered, drops = [], []
    for t, dropped_now in source(pipe, seconds * 1000.0):
        drops += [t] * dropped_now
    released, _ = pipe.advance(seconds * 1000.0)
    delivered += released
    return {"delivered": delivered, "drops": drops}


class Sender:
    """1500-byte packets into a pipe, each ``gap`` ms after the one before (a subclass says
    how long, from the drops the last one met); what came out is kept in ``released``."""

    def __init__(self) -> None:
        self.released: list = []

    def gap(self, t: float, drops: int) -> float:
        raise NotImplementedError

    def __call__(self, pipe: Pipe, until: float):
        t = 0.0
        while t < until:
            dropped: list = []
            pipe.send((t, 1500, t), dropped)
            released, lost = pipe.advance(t)
            self.released += released
            drops = len(dropped) + len(lost)
            gap = self.gap(t, drops)
            yield t, drops
            t += gap


class Unresponsive(Sender):
    """Constant-rate packets, whatever is dropped."""

    def __init__(self, rate_pps: float) -> None:
        super().__init__()
        self.interval = 1000.0 / rate_pps

    def gap(self, t: float, drops: int) -> float:
        return self.interval


class Aimd(Sender):
    """A TCP-like sender: a window of packets per RTT, one more each RTT, halved on a drop
    (at most once per RTT): what CoDel and PIE are built to hold."""

    def __init__(self, rtt_ms: float = 40.0) -> None:
        super().__init__()
        self.rtt, self.window, self.last_cut = rtt_ms, 10.0, -1e9

    def gap(self, t: float, drops: int) -> float:
        if drops and t - self.last_cut > self.rtt:
            self.window, self.last_cut = max(1.0, self.window / 2), t
        self.window += 1.0 / self.window
        return self.rtt / self.window


def sojourns(source, after_ms: float) -> list[float]:
    return [out - arrived for out, _, arrived in source.released if arrived > after_ms]


def test_codel_holds_the_sojourn_time_near_its_target_under_a_sustained_load() -> None:
    """A 12 Mbit/s link, a window-based sender that always wants more: drop-tail lets the
    queue fill (100 packets: ~100 ms), CoDel keeps the sojourn time near its 5 ms target."""
    tail, codel = Aimd(), Aimd()
    serve(QueueSpec("droptail", packets=100), tail, 60)
    serve(QueueSpec("codel", packets=1000), codel, 60)
    assert statistics.mean(sojourns(tail, 15_000)) > 30
    kept = sojourns(codel, 15_000)
    assert statistics.mean(kept) < 2 * 5.0 and np.percentile(kept, 90) < 4 * 5.0
    wide = Aimd()
    serve(QueueSpec("codel", packets=1000, target_ms=20.0), wide, 60)
    assert statistics.mean(sojourns(wide, 15_000)) > statistics.mean(kept)


def test_codel_drops_at_the_control_law_spacing() -> None:
    """Under an overload CoDel stays dropping, the n-th drop interval / sqrt(n) after the one
    before (to within 2 ms: drops are seen at the sender's next packet, and made at the
    link's next dequeue, each about 1 ms apart)."""
    spec = QueueSpec("codel", packets=10_000, target_ms=5.0, interval_ms=100.0)
    result = serve(spec, Unresponsive(1050), 6)
    drops = result["drops"]
    assert drops, "CoDel never dropped under a 5 % overload"
    first = drops[0]
    assert first >= 100.0  # not before the sojourn time stayed above target for an interval
    gaps = np.diff(drops[:30])
    expected = [100.0 / np.sqrt(n) for n in range(1, len(gaps) + 1)]
    assert np.allclose(gaps, expected, atol=2.0), (gaps[:8], expected[:8])


@pytest.mark.parametrize("reference_ms", [15.0, 50.0])
def test_pie_holds_the_queueing_delay_near_its_reference(reference_ms: float) -> None:
    """An unresponsive 1.5x overload: PIE's drop probability rises until the queueing delay
    sits near ``qdelay_ref`` (here: 24 ms at 15, 55 ms at 50), while drop-tail's queue of
    1000 packets stays full (about a second)."""
    source, tail = Unresponsive(1500), Unresponsive(1500)
    serve(QueueSpec("pie", packets=1000, qdelay_ref_ms=reference_ms), source, 20)
    serve(QueueSpec("droptail", packets=1000), tail, 20)
    held = statistics.median(sojourns(source, 5000))
    assert 0.5 * reference_ms < held < 1.75 * reference_ms, held
    assert statistics.median(sojourns(tail, 5000)) > 900


def test_an_opportunity_carries_1504_bytes_shared_and_spanned_and_unused_ones_are_wasted() -> None:
    """Opportunities every 1 ms from 0: two 700-byte packets share one; a 1500-byte packet
    then fits the next whole; bytes of opportunities that found the queue empty are lost."""
    layout = PipeLayout(stages=(("link", None),), queue=QueueSpec.infinite())
    pipe = layout.build(random.Random(0))
    pipe.use_deliveries(np.arange(1, 1001, dtype=float), 0.0)
    dropped: list = []
    for label, size in (("a", 700), ("b", 700), ("c", 1500)):
        pipe.send((0.5, size, label), dropped)
    released, _ = pipe.advance(10.0)
    assert [(t, label) for t, _, label in released] == [(1.0, "a"), (1.0, "b"), (2.0, "c")]
    pipe.send((20.5, 200, "late"), dropped)  # opportunities 3..20 went by unused
    released, _ = pipe.advance(30.0)
    assert [(t, label) for t, _, label in released] == [(21.0, "late")]
    assert PACKET_SIZE == 1504 and not dropped


def test_a_schedule_played_once_stops_delivering_at_its_end() -> None:
    looping = PipeLayout(stages=(("link", None),), queue=QueueSpec.infinite())
    once = PipeLayout(stages=(("link", None),), queue=QueueSpec.infinite(), once=True)
    delivered = {}
    for name, layout in (("loop", looping), ("once", once)):
        pipe = layout.build(random.Random(0))
        pipe.use_deliveries(np.array([5.0, 10.0]), 0.0)  # two per 10 ms period
        dropped: list = []
        for k in range(10):
            pipe.send((float(k), 1000, k), dropped)
        delivered[name] = len(pipe.advance(100.0)[0])
    assert delivered == {"loop": 10, "once": 3}  # two opportunities: 3008 bytes
