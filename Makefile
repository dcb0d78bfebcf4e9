# Shortcuts for scripts/bootstrap.sh, which installs what is missing and then runs the job.
.PHONY: install demo test bench clean

install:
	bash scripts/bootstrap.sh install

demo:
	bash scripts/bootstrap.sh demo

test:
	bash scripts/bootstrap.sh test

bench: install
	.venv/bin/python scripts/bench_runtime.py

clean:
	rm -rf .venv results .pytest_cache .ruff_cache
