"""``dsd-emu plan`` (``emulator/cli/plan.py``) as a script: ``python
scripts/plan_capacity.py`` works as before, re-run with the project's venv where needed."""

from project_python import use_project_python

if __name__ == "__main__":
    use_project_python(__file__)
    from emulator.cli.plan import main

    raise SystemExit(main())
