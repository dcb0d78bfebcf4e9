"""``dsd-emu``, the one entry point: its subcommands, its one-line errors, and an install
without the optional parts (``pip install .``) that simulates with no torch, transformers
or Mininet."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from cli import ROOT, run_command

from emulator.cli import main as entry


def test_the_version_and_the_commands_are_listed() -> None:
    version = run_command("-m emulator.cli.main --version")
    assert version.returncode == 0 and version.stdout.startswith("dsd-emu ")
    listing = run_command("-m emulator.cli.main --help")
    assert listing.returncode == 0
    for name in [*entry.COMMANDS, "trace"]:
        assert f"  {name} " in listing.stdout
    traces = run_command("-m emulator.cli.main trace --help")
    assert all(f"  {name} " in traces.stdout for name in entry.TRACE_COMMANDS)


def test_every_subcommand_module_has_a_main() -> None:
    for module, _ in [*entry.COMMANDS.values(), *entry.TRACE_COMMANDS.values()]:
        assert (ROOT / "emulator" / "cli" / f"{module}.py").is_file(), module


def test_an_unknown_command_is_one_line_and_exit_2() -> None:
    result = run_command("-m emulator.cli.main teleport")
    assert result.returncode == 2 and "no command 'teleport'" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_subcommand_runs_with_its_own_name(tmp_path) -> None:
    result = run_command(f"-m emulator.cli.main simulate topologies/default.yaml --out {tmp_path}")
    assert result.returncode == 0, result.stderr
    assert "overall" in result.stdout
    bad = run_command("-m emulator.cli.main simulate --edges 0 topologies/default.yaml")
    assert bad.returncode == 2 and "dsd-emu simulate: error:" in bad.stderr


def test_a_missing_optional_part_names_its_extra(monkeypatch, capsys) -> None:
    def lacking(name: str) -> None:
        raise ModuleNotFoundError("No module named 'mininet'", name="mininet")

    monkeypatch.setattr(entry.importlib, "import_module", lacking)
    assert entry.main(["run"]) == 2
    said = capsys.readouterr().err
    assert "needs mininet" in said and "pip install 'dsd-emu[net]'" in said


@pytest.mark.slow
def test_pip_install_without_extras_simulates_without_torch_or_mininet(tmp_path) -> None:
    """The package as a user installs it, in a venv of its own: no torch, transformers or
    Mininet, and ``dsd-emu simulate`` works (on the committed reference profile, said)."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    source = tmp_path / "source"  # a copy, so that the build leaves nothing in the checkout
    shutil.copytree(
        ROOT,
        source,
        ignore=shutil.ignore_patterns(
            ".venv", ".git", "results", "build", ".*_cache", "__pycache__"
        ),
    )
    installed = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", str(source)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert installed.returncode == 0, installed.stderr[-2000:]
    names = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "list", "--format=json"],
        capture_output=True,
        text=True,
        check=True,
    )
    packages = {p["name"].lower() for p in json.loads(names.stdout)}
    assert "dsd-emu" in packages and not packages & {"torch", "transformers", "mininet"}
    work = tmp_path / "work"
    work.mkdir()
    for folder in ("topologies", "traces"):
        shutil.copytree(ROOT / folder, work / folder)
    cache = tmp_path / "cache"  # no profile of this machine: the reference one is taken
    simulated = subprocess.run(
        [str(venv / "bin" / "dsd-emu"), "simulate", "topologies/default.yaml", "--json"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=work,
        env={"PATH": "/usr/bin:/bin", "DSD_EMU_CACHE": str(cache), "HOME": str(tmp_path)},
    )
    assert simulated.returncode == 0, simulated.stderr[-2000:]
    assert json.loads(simulated.stdout.strip().splitlines()[-1])["requests"] == 6
    assert "no torch here" in simulated.stdout + simulated.stderr
    assert list(Path(work / "results").glob("*-sim-default/metrics.json"))
    refused = subprocess.run(
        [str(venv / "bin" / "dsd-emu"), "run"], capture_output=True, text=True, cwd=work
    )
    assert refused.returncode == 2 and "pip install 'dsd-emu[net]'" in refused.stderr
