"""The trace layer: model operations, canonical CSV, importers on the recorded datasets."""

from __future__ import annotations

import csv
import math
import os
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest

from emulator.traces.csvio import read_trace, write_trace
from emulator.traces.generator import PROFILES, generate
from emulator.traces.importers import import_trace, load_trace
from emulator.traces.linktrace import LinkTrace, TraceError, combine
from emulator.traces.recorded import SHARED_TRACES
from emulator.traces.stats import summarise_trace

SHARED = SHARED_TRACES
needs_shared = pytest.mark.skipif(
    not SHARED.is_dir(), reason="recorded traces (../shared/traces) are not present"
)


def step_trace() -> LinkTrace:
    nan = np.full(3, np.nan)
    up = {
        "rate_mbps": np.array([1.0, 2.0, 0.0]),
        "delay_ms": np.array([5.0, 10.0, 20.0]),
        "jitter_ms": nan,
        "loss_pct": np.array([0.0, 1.0, 0.0]),
    }
    down = {
        "rate_mbps": np.array([10.0, 20.0, 0.0]),
        "delay_ms": np.array([5.0, 10.0, 20.0]),
        "jitter_ms": nan,
        "loss_pct": nan,
    }
    return LinkTrace(np.array([0.0, 2.0, 3.0]), 4.0, up, down, {"source": "test"})


def test_value_at_time_slice_loop_and_scale() -> None:
    trace = step_trace()
    assert trace.at(0.0, "up").rate_mbps == 1.0
    assert trace.at(2.5, "down").rate_mbps == 20.0 and trace.at(99, "down").delay_ms == 20.0
    part = trace.slice(1.0, 2.5)
    assert part.times.tolist() == [0.0, 1.0] and part.duration_s == 1.5
    looped = trace.loop(10.0)
    assert looped.at(4.5, "up").rate_mbps == 1.0 and looped.at(9.5, "up").rate_mbps == 1.0
    assert looped.duration_s == 10.0
    slow = trace.time_scaled(2.0)
    assert slow.at(5.0, "up").rate_mbps == 2.0 and slow.duration_s == 8.0


def test_resample_keeps_the_mean_rate() -> None:
    trace = step_trace()
    even = trace.resampled(0.5)
    assert summarise_trace(even)["down_mbps_mean"] == pytest.approx(
        summarise_trace(trace)["down_mbps_mean"]
    )
    assert math.isnan(even.up["jitter_ms"][0])


def test_summary_reports_rtt_and_outages() -> None:
    stats = summarise_trace(step_trace())
    assert stats["rtt_ms_mean"] == pytest.approx((10 * 2 + 20 * 1 + 40 * 1) / 4)
    assert stats["outage_s"] == pytest.approx(1.0)
    assert stats["down_mbps_mean"] == pytest.approx((10 * 2 + 20) / 4)


def test_combine_takes_rates_and_splits_rtt() -> None:
    bandwidth = generate("lte", 20, seed=1)
    rtt = import_trace_from_samples([100.0, 200.0], bin_s=5.0)
    combined = combine(bandwidth, rtt, up_share=0.25)
    assert combined.duration_s == bandwidth.duration_s
    assert combined.at(1.0, "up").delay_ms == pytest.approx(25.0)
    assert combined.at(1.0, "down").delay_ms == pytest.approx(75.0)
    assert combined.at(12.0, "up").delay_ms == pytest.approx(25.0)  # RTT trace looped
    assert combined.at(7.0, "down").rate_mbps == bandwidth.at(7.0, "down").rate_mbps


def import_trace_from_samples(rtts: list[float], bin_s: float) -> LinkTrace:
    from emulator.traces.building import rtt_trace

    return rtt_trace(np.arange(len(rtts)) * bin_s, np.asarray(rtts), bin_s, {"source": "t"})


def test_canonical_csv_round_trips_exactly(tmp_path) -> None:
    for trace in (step_trace(), generate("5g", 60, step_s=0.1, seed=3)):
        path = tmp_path / "trace.csv"
        write_trace(trace, path)
        again = read_trace(path)
        assert np.array_equal(again.times, trace.times) and again.duration_s == trace.duration_s
        for direction in ("up", "down"):
            for key, values in getattr(trace, direction).items():
                assert np.array_equal(getattr(again, direction)[key], values, equal_nan=True)
        assert again.meta == trace.meta
        write_trace(again, tmp_path / "again.csv")
        assert (tmp_path / "again.csv").read_bytes() == path.read_bytes()


def test_generator_is_seeded_and_near_its_profile() -> None:
    a, b = generate("wifi", 600, seed=7), generate("wifi", 600, seed=7)
    assert np.array_equal(a.down["rate_mbps"], b.down["rate_mbps"])
    assert not np.array_equal(a.down["rate_mbps"], generate("wifi", 600, seed=8).down["rate_mbps"])
    for name, profile in PROFILES.items():
        stats = summarise_trace(generate(name, 3000, seed=1))
        assert stats["down_mbps_mean"] == pytest.approx(profile.down_mbps_mean, rel=0.2)
        assert stats["rtt_ms_p50"] == pytest.approx(profile.rtt_ms_median, rel=0.1)


@pytest.mark.parametrize(
    ("content", "fmt", "message"),
    [
        ("", "norway", "empty"),
        ("0.0 1.0\n1.0 fast\n", "norway", ":2: rate 'fast' is not a number"),
        ("0.0 1.0 2.0\n", "norway", ":1: expected 'time_s Mbit/s'"),
        ("12\n13\nabc\n", "mahimahi", ":3: expected a millisecond timestamp"),
        ("1,100\n2\n", "wifi-cellular", ":2: expected 'seconds,bytes_per_second'"),
        ("2020-01-01 00:00:00.0_5.0,garbage\n", "mecperf", ":1: bad sample 'garbage'"),
        ("rtt_ms,carrier\nx,A\n", "5gophers", ":2: RTT 'x' is not a number"),
        ("Timestamp,DL_bitrate\n", "ucc", ":1: missing columns ['UL_bitrate']"),
    ],
)
def test_malformed_files_name_file_and_line(tmp_path, content, fmt, message) -> None:
    path = tmp_path / ("bad.down" if fmt == "mahimahi" else "bad.txt")
    path.write_text(content)
    with pytest.raises(TraceError) as info:
        import_trace(fmt, path)
    assert str(path) in str(info.value) and message in str(info.value)


def test_defects_are_handled_as_documented(tmp_path) -> None:
    path = tmp_path / "messy"
    path.write_text("2.0 3.0\n0.0 1.0\n1.0 0.0\n1.0 4.0\n")  # unsorted, duplicate, outage
    trace = import_trace("norway", path)
    assert trace.times.tolist() == [0.0, 1.0, 2.0]
    assert trace.down["rate_mbps"].tolist() == [1.0, 2.0, 3.0]  # duplicates averaged
    ucc = tmp_path / "ucc.csv"
    ucc.write_text(
        "Timestamp,DL_bitrate,UL_bitrate,PINGAVG,PINGSTDEV,PINGLOSS\n"
        "2020.01.01_00.00.00,1000,100,-,-,-\n"
        "2020.01.01_00.00.01,0,0,40,2,0\n"
        "2020.01.01_00.00.02,2000,-,-,-,-\n"
    )
    trace = import_trace("ucc", ucc)
    assert math.isnan(trace.up["delay_ms"][0]) and trace.up["delay_ms"][2] == 20.0
    assert trace.up["rate_mbps"].tolist() == [0.1, 0.0, 0.0]  # missing UL holds the last
    assert summarise_trace(trace)["outage_s"] == 2.0  # the uplink stays at 0 until data


def test_unknown_format_and_options_are_clear_errors(tmp_path) -> None:
    with pytest.raises(TraceError, match="unknown trace format 'pcap'"):
        import_trace("pcap", tmp_path / "x")
    with pytest.raises(TraceError, match="no such file"):
        import_trace("norway", tmp_path / "absent")
    (tmp_path / "ok").write_text("0 1\n")
    with pytest.raises(TraceError, match="takes options"):
        import_trace("norway", tmp_path / "ok", bin_s=2.0)


# -- the recorded datasets -------------------------------------------------------------------


def time_weighted_mean(times: list[float], values: list[float], end: float) -> float:
    widths = np.diff(np.append(times, end))
    return float(np.dot(widths, values) / widths.sum())


@needs_shared
def test_mahimahi_att_lte_mean_and_raw_deliveries() -> None:
    trace = load_trace(str(SHARED / "mahimahi" / "ATT-LTE-driving-2016.down"))
    stats = summarise_trace(trace)
    assert stats["duration_s"] == pytest.approx(120.0, abs=0.01)
    assert stats["down_mbps_mean"] == pytest.approx(4.56, rel=0.02)
    lines = (SHARED / "mahimahi" / "ATT-LTE-driving-2016.up").read_text().split()
    assert trace.deliveries_ms["up"].size == len(lines)
    up_mean = len(lines) * 1500 * 8 / (int(lines[-1]) / 1000) / 1e6
    assert stats["up_mbps_mean"] == pytest.approx(up_mean, rel=1e-3)


@needs_shared
def test_norway_mean_matches_direct_computation() -> None:
    path = SHARED / "norway-3g" / "norway_bus_1"
    rows = [tuple(map(float, line.split())) for line in path.read_text().splitlines() if line]
    times, rates = zip(*rows, strict=True)
    step = float(np.median(np.diff(times)))
    expected = time_weighted_mean(list(times), list(rates), times[-1] + step)
    assert summarise_trace(load_trace(str(path)))["down_mbps_mean"] == pytest.approx(expected)


@needs_shared
def test_wifi_cellular_mean_matches_direct_computation() -> None:
    path = SHARED / "wifi-cellular" / "7_1_wifi.csv"
    rows = list(csv.reader(path.read_text().splitlines()))
    expected = np.mean([int(r[1]) * 8 / 1e6 for r in rows])
    assert summarise_trace(load_trace(str(path)))["down_mbps_mean"] == pytest.approx(expected)


@needs_shared
def test_ucc_means_match_direct_computation() -> None:
    path = sorted((SHARED / "ucc-5g" / "static").glob("*.csv"))[0]
    rows = list(csv.DictReader(path.read_text().splitlines()))

    per_second: dict[float, list[float]] = {}
    for r in rows:
        stamp = datetime.strptime(r["Timestamp"], "%Y.%m.%d_%H.%M.%S").timestamp()
        per_second.setdefault(stamp, []).append(float(r["DL_bitrate"]) / 1000)
    stamps = sorted(per_second)
    assert len(stamps) < len(rows)  # this file has duplicate seconds: they are averaged
    times = [s - stamps[0] for s in stamps]
    end = times[-1] + float(np.median(np.diff(times)))
    down = time_weighted_mean(times, [np.mean(per_second[s]) for s in stamps], end)
    pings = [float(r["PINGAVG"]) for r in rows if r["PINGAVG"] not in ("-", "")]
    stats = summarise_trace(load_trace(str(path)))
    assert stats["down_mbps_mean"] == pytest.approx(down)
    assert min(pings) <= stats["rtt_ms_p50"] <= max(pings)


@needs_shared
def test_5gophers_rtt_samples_and_selection() -> None:
    path = SHARED / "5gophers" / "ping-trace-01.log"
    rows = list(csv.DictReader(path.read_text().splitlines()))
    trace = load_trace(str(path))
    expected = np.mean([float(r["rtt_in_ms"]) for r in rows])
    assert summarise_trace(trace)["rtt_ms_mean"] == pytest.approx(expected)
    select = {"carrier": "VERIZON", "server_location": "US-East"}
    carriers = import_trace("5gophers", SHARED / "5gophers" / "rtt-all-carriers.csv", select=select)
    assert carriers.pieces == 120


@needs_shared
def test_mecperf_rtt_is_close_to_the_samples() -> None:
    path = SHARED / "mecperf" / "lte-TCPRTT-noise0M_Client_cloud_trace0.txt"
    samples = [float(s.rsplit("_", 1)[1]) for s in path.read_text().strip().split(",")]
    stats = summarise_trace(load_trace(str(path)))
    assert stats["rtt_ms_p50"] == pytest.approx(np.median(samples), rel=0.1)
    assert "cloud observer" in load_trace(str(path)).meta["derived"]


def test_the_data_beside_the_project_can_lie_elsewhere(tmp_path) -> None:
    """``DSD_EMU_TRACES`` and ``DSD_EMU_VIDUR`` move the recorded traces and VIDUR's tables:
    an empty folder there is as good as none."""
    code = (
        "from emulator.traces.recorded import SHARED_TRACES, recorded_links; "
        "from emulator.sim.vidur import SHARED_VIDUR; "
        "print(SHARED_TRACES, SHARED_VIDUR, len(recorded_links()))"
    )
    env = {
        **os.environ,
        "DSD_EMU_TRACES": str(tmp_path / "t"),
        "DSD_EMU_VIDUR": str(tmp_path / "v"),
    }
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=env,
        check=True,
        cwd=Path(__file__).resolve().parents[1],
    )
    assert done.stdout.split() == [str(tmp_path / "t"), str(tmp_path / "v"), "0"]
