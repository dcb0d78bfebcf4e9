"""``dsd-emu trace import`` (``emulator/cli/trace_import.py``) as a script: ``python
scripts/import_trace.py`` works as before, re-run with the project's venv where needed."""

from project_python import use_project_python

if __name__ == "__main__":
    use_project_python(__file__)
    from emulator.cli.trace_import import main

    raise SystemExit(main())
