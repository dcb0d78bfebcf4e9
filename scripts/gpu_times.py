"""``dsd-emu gpu-times`` (``emulator/cli/gpu_times.py``) as a script: ``python
scripts/gpu_times.py`` works as before, re-run with the project's venv where needed."""

from project_python import use_project_python

if __name__ == "__main__":
    use_project_python(__file__)
    from emulator.cli.gpu_times import main

    raise SystemExit(main())
