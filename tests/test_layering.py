"""The runtime is the base layer: nothing in runtime/ may import the emulator."""

from __future__ import annotations

import ast
from pathlib import Path

RUNTIME = Path(__file__).resolve().parents[1] / "runtime"


def imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_runtime_never_imports_emulator() -> None:
    files = sorted(RUNTIME.glob("*.py"))
    assert len(files) > 5
    offenders = {
        f.name: sorted(m for m in imported_modules(f) if m.split(".")[0] == "emulator")
        for f in files
    }
    assert not {name: mods for name, mods in offenders.items() if mods}


SIM = RUNTIME.parent / "emulator" / "sim"


def defined_methods(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return {
        item.name
        for node in ast.walk(tree)
        if isinstance(node, ast.ClassDef)
        for item in node.body
        if isinstance(item, ast.FunctionDef)
    }


def test_the_simulator_uses_the_runtime_policies_and_never_reads_results() -> None:
    files = sorted(SIM.glob("*.py"))
    assert len(files) > 4
    policy_methods = {"next_gamma", "observe", "should_dispatch", "wait_budget_ms"}
    for path in files:
        assert not defined_methods(path) & policy_methods, path.name
        source = path.read_text(encoding="utf-8")
        assert "read_events" not in source and "metrics.json" not in source, path.name
    simulation = imported_modules(SIM / "simulation.py") | imported_modules(SIM / "edge.py")
    assert "runtime.policies" in simulation
