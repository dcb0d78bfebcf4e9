"""``dsd-emu trace validate`` (``emulator/cli/trace_validate.py``) as a script: ``python
scripts/validate_replay.py`` works as before, re-run with the project's venv where needed."""

from project_python import use_project_python

if __name__ == "__main__":
    use_project_python(__file__)
    from emulator.cli.trace_validate import main

    raise SystemExit(main())
