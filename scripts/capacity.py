"""``dsd-emu capacity`` (``emulator/cli/capacity.py``) as a script: ``python
scripts/capacity.py`` works as before, re-run with the project's venv where needed."""

from project_python import use_project_python

if __name__ == "__main__":
    use_project_python(__file__)
    from emulator.cli.capacity import main

    raise SystemExit(main())
