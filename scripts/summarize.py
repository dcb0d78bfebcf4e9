"""``dsd-emu summarize`` (``emulator/cli/summarize.py``) as a script: ``python
scripts/summarize.py`` works as before, re-run with the project's venv where needed."""

from project_python import use_project_python

if __name__ == "__main__":
    use_project_python(__file__)
    from emulator.cli.summarize import main

    raise SystemExit(main())
