"""import_trace.py, trace_stats.py and generate_trace.py as a user runs them."""

from __future__ import annotations

import json

import pytest
from cli import run_script as run

from emulator.traces.recorded import SHARED_TRACES

SHARED = SHARED_TRACES


def test_generate_stats_and_plot(tmp_path) -> None:
    out = tmp_path / "lte.csv"
    assert run("generate_trace.py", "lte", "--duration", "60", "-o", str(out)).returncode == 0
    result = run("trace_stats.py", str(out), "--json", "--plot", str(tmp_path / "lte.png"))
    assert result.returncode == 0, result.stderr
    stats = json.loads(result.stdout.strip().splitlines()[-1])
    for key in (
        "duration_s",
        "up_mbps_mean",
        "down_mbps_mean",
        "rtt_ms_mean",
        "rtt_ms_p95",
        "outage_s",
    ):
        assert key in stats
    assert stats["duration_s"] == 60.0
    assert (tmp_path / "lte.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.skipif(not SHARED.is_dir(), reason="recorded traces (../shared/traces) are absent")
def test_import_bandwidth_with_rtt_then_stats(tmp_path) -> None:
    out = tmp_path / "att.csv"
    result = run(
        "import_trace.py",
        "mahimahi",
        str(SHARED / "mahimahi" / "ATT-LTE-driving-2016.down"),
        "--rtt",
        f"mecperf:{SHARED / 'mecperf' / 'lte-TCPRTT-noise0M_Client_cloud_trace0.txt'}",
        "-o",
        str(out),
    )
    assert result.returncode == 0, result.stderr
    stats = json.loads(run("trace_stats.py", str(out), "--json").stdout.splitlines()[-1])
    assert stats["down_mbps_mean"] == pytest.approx(4.56, rel=0.02)
    assert 50 < stats["rtt_ms_p50"] < 150


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["pcap", "{tmp}/x.pcap"], "unknown trace format 'pcap'"),
        (["norway", "{tmp}/absent"], "no such file"),
        (["norway", "{tmp}/empty"], "the file is empty"),
        (["norway", "{tmp}/bad"], "bad:2: rate 'x' is not a number"),
    ],
)
def test_import_errors_are_one_line(tmp_path, args, message) -> None:
    (tmp_path / "empty").write_text("")
    (tmp_path / "bad").write_text("0 1\n1 x\n")
    result = run(
        "import_trace.py", *(a.format(tmp=tmp_path) for a in args), "-o", str(tmp_path / "out.csv")
    )
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1 and message in result.stderr
    assert not (tmp_path / "out.csv").exists()


def test_stats_errors_are_one_line(tmp_path) -> None:
    (tmp_path / "broken.csv").write_text("# dsd-emu link trace v1\n# duration_s: 5\nnope\n")
    for target in (str(tmp_path / "missing.csv"), str(tmp_path / "broken.csv")):
        result = run("trace_stats.py", target)
        assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
        assert "Traceback" not in result.stderr
