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
	.venv/bin/python bench/bus.py
