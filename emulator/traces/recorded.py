"""The recorded public traces beside the project (``../shared/traces``, see its
PROVENANCE.md), combined into one access link per dataset family: what the AWC evaluation
and the fidelity suite replay; and, for the suite's held-out set, one more link per family
made of other recordings of it. Nothing here is copied into the project."""

from __future__ import annotations

import os
from pathlib import Path

# ``DSD_EMU_TRACES`` where the recorded traces lie elsewhere
SHARED_TRACES = Path(
    os.environ.get("DSD_EMU_TRACES") or Path(__file__).resolve().parents[3] / "shared" / "traces"
)


def recorded_links(folder: Path = SHARED_TRACES) -> dict[str, dict[str, str]]:
    """Link specs (as a scenario's ``link`` takes them) by name: LTE driving rates with an
    LTE RTT trace, 5G driving rates with 5G pings, WiFi rates with a WiFi RTT trace,
    Norwegian 3G bus rates with the LTE RTT trace, and edge-vs-cloud RTT alone. Empty when
    the recorded traces are absent."""
    if not folder.is_dir():
        return {}
    mahimahi = folder / "mahimahi" / "ATT-LTE-driving-2016"
    mecperf = folder / "mecperf"
    ucc = sorted((folder / "ucc-5g" / "driving").glob("*.csv"))[0]
    return {
        "lte-driving": {
            "up": f"mahimahi:{mahimahi}.up",
            "down": f"mahimahi:{mahimahi}.down",
            "rtt": f"mecperf:{mecperf / 'lte-TCPRTT-noise0M_Client_cloud_trace0.txt'}",
        },
        "5g-driving": {
            "trace": f"ucc:{ucc}",
            "rtt": f"5gophers:{folder / '5gophers' / 'ping-trace-01.log'}",
        },
        "wifi": {
            "trace": f"wifi-cellular:{folder / 'wifi-cellular' / '7_1_wifi.csv'}",
            "rtt": f"mecperf:{mecperf / 'wifi-TCPRTT-noise0M_Client_cloud_trace0.txt'}",
        },
        "3g-bus": {
            "trace": f"norway:{folder / 'norway-3g' / 'norway_bus_1'}",
            "rtt": f"mecperf:{mecperf / 'lte-TCPRTT-noise0M_Client_cloud_trace0.txt'}",
        },
        "edge-vs-cloud-rtt": {
            "up": f"mecperf:{mecperf / 'lte-TCPRTT-noise20M_Client_edge_trace0.txt'}",
            "down": f"mecperf:{mecperf / 'lte-TCPRTT-noise20M_Client_edge_trace0.txt'}",
        },
    }


def held_out_links(folder: Path = SHARED_TRACES) -> dict[str, dict[str, str]]:
    """Links no model change was judged on: per family, other recordings than
    ``recorded_links`` uses (another drive, carrier, ride, session or RTT trace). Empty
    when the recorded traces are absent."""
    if not folder.is_dir():
        return {}
    mahimahi = folder / "mahimahi" / "TMobile-LTE-short"
    mecperf = folder / "mecperf"
    ucc = sorted((folder / "ucc-5g" / "driving").glob("*.csv"))[1]
    return {
        "lte-short": {
            "up": f"mahimahi:{mahimahi}.up",
            "down": f"mahimahi:{mahimahi}.down",
            "rtt": f"mecperf:{mecperf / 'lte-TCPRTT-noise20M_Client_cloud_trace1.txt'}",
        },
        "5g-driving-b": {
            "trace": f"ucc:{ucc}",
            "rtt": f"5gophers:{folder / '5gophers' / 'ping-trace-02.log'}",
        },
        "wifi-b": {
            "trace": f"wifi-cellular:{folder / 'wifi-cellular' / '8_1_wifi.csv'}",
            "rtt": f"mecperf:{mecperf / 'wifi-TCPRTT-noise0M_Client_cloud_trace1.txt'}",
        },
        "3g-tram": {
            "trace": f"norway:{folder / 'norway-3g' / 'norway_tram_10'}",
            "rtt": f"mecperf:{mecperf / 'lte-TCPRTT-noise0M_Client_cloud_trace1.txt'}",
        },
        "edge-vs-cloud-rtt-b": {
            "up": f"mecperf:{mecperf / 'lte-TCPRTT-noise50M_Client_edge_trace1.txt'}",
            "down": f"mecperf:{mecperf / 'lte-TCPRTT-noise50M_Client_edge_trace1.txt'}",
        },
    }
