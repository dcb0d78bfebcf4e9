# Shortcuts for scripts/bootstrap.sh, which installs what is missing and then runs the job.
.PHONY: install demo test check bench clean

install:
	bash scripts/bootstrap.sh install

demo:
	bash scripts/bootstrap.sh demo

test:
	bash scripts/bootstrap.sh test

# the fast tier (under 2 minutes): lint, types of runtime/, emulator/sim/ and emulator/link/, and the tests
# that need no root, no bundled model and no more than a few seconds each
check:
	bash scripts/bootstrap.sh check

bench: install
	.venv/bin/python scripts/bench_runtime.py

clean:
	rm -rf .venv results .pytest_cache .ruff_cache .mypy_cache
