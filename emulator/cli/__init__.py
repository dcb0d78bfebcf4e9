"""The command-line programs, one module per ``dsd-emu`` subcommand (``emulator.cli.main``).
Each parses its arguments, calls the packages and prints; ``scripts/`` wraps them."""
