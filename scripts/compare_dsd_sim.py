"""``dsd-emu compare-dsd-sim`` (``emulator/cli/compare_dsd_sim.py``) as a script: ``python
scripts/compare_dsd_sim.py`` works as before, re-run with the project's venv where needed."""

from project_python import use_project_python

if __name__ == "__main__":
    use_project_python(__file__)
    from emulator.cli.compare_dsd_sim import main

    raise SystemExit(main())
