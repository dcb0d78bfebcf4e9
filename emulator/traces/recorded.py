"""The recorded public traces beside the project (``../shared/traces``, see its
PROVENANCE.md), combined into one access link per dataset family: what the AWC evaluation
and the fidelity suite replay. Nothing here is copied into the project."""

from __future__ import annotations

from pathlib import Path

SHARED_TRACES = Path(__file__).resolve().parents[3] / "shared" / "traces"


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
