.PHONY: install check test lint bench

install:
	python3 -m venv .venv && .venv/bin/pip install -q -e '.[test]'

test:
	.venv/bin/pytest

lint:
	.venv/bin/ruff check .
	.venv/bin/mypy

check: lint test

bench:
	for b in bus gateway orchestrator e2e deploy sources sdk_overhead; do \
		.venv/bin/python bench/$$b.py || exit 1; done
