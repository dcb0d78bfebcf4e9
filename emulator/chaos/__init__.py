"""Faults made for real, and their outcome checked: what ``scripts/chaos.py`` runs.

``context`` holds what every fault shares, ``fuzz`` makes protocol messages, ``files``
malformed traces and scenarios, ``ledger`` counts what a fault leaked or lost, and
``runtime_faults`` and ``emulator_faults`` hold the faults themselves (processes killed by
PID, outages through the shaper, SIGINT and SIGKILL mid-run).
"""
