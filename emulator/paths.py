"""Where the project's own files are (``topologies/``, ``results/``): the source tree when
the package runs from one, else the working folder, as after ``pip install .``."""

from __future__ import annotations

from pathlib import Path

SOURCE_TREE = Path(__file__).resolve().parents[1]
ROOT = SOURCE_TREE if (SOURCE_TREE / "pyproject.toml").is_file() else Path.cwd()
