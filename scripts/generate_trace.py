"""``dsd-emu trace generate`` (``emulator/cli/trace_generate.py``) as a script: ``python
scripts/generate_trace.py`` works as before, re-run with the project's venv where needed."""

from project_python import use_project_python

if __name__ == "__main__":
    use_project_python(__file__)
    from emulator.cli.trace_generate import main

    raise SystemExit(main())
