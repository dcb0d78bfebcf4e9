"""``dsd-emu train-awc`` (``emulator/cli/train_awc.py``) as a script: ``python
scripts/train_awc.py`` works as before, re-run with the project's venv where needed."""

from project_python import use_project_python

if __name__ == "__main__":
    use_project_python(__file__)
    from emulator.cli.train_awc import main

    raise SystemExit(main())
