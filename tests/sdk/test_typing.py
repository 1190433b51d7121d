"""Calls through @flow/@task keep the wrapped function's types (checked with mypy --strict)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import flowbus

USAGE = textwrap.dedent(
    """
    from flowbus import flow, task
    from flowbus.futures import FlowbusFuture


    @task
    def add(x: int, y: int = 1) -> int:
        return x + y


    @task(retries=2)
    async def fetch(url: str) -> bytes:
        return b""


    @flow(name="typed")
    def main(n: int) -> int:
        total: int = add(n)
        future: FlowbusFuture[int] = add.submit(n, y=2)
        return total + future.result()


    async def use_async() -> bytes:
        return await fetch("https://example.com")


    def use_async_future() -> bytes:
        future: FlowbusFuture[bytes] = fetch.submit("https://example.com")
        return future.result()


    add("not an int")  # the one expected error
    """
)


#: The check of this file alone. The package itself is checked by ``mypy`` (pyproject.toml)
#: in CI: here its modules are read for their types, with errors left silent, and the
#: libraries no signature of ``@flow``/``@task`` involves are skipped (read as ``Any``),
#: which halves the work of a check from scratch.
CONFIG = textwrap.dedent(
    """
    [mypy]
    python_version = 3.11
    strict = True
    plugins = pydantic.mypy
    follow_imports = silent
    ignore_missing_imports = True

    [mypy-gateway.*,orchestrator.*,runners.*,aiohttp.*,nats.*,rich.*,markdown_it.*,pendulum.*,lark.*,jinja2.*,prometheus_client.*,yaml.*]
    follow_imports = skip
    """
)

#: mypy --strict with no cache reads flowbus and its dependencies from scratch: ~10 s quiet,
#: several times that on a loaded machine.
MYPY_SECONDS = 240


@pytest.mark.timeout(MYPY_SECONDS + 60)
def test_task_and_flow_calls_are_typed_like_the_function(tmp_path: Path) -> None:
    source = tmp_path / "usage.py"
    source.write_text(USAGE)
    config = tmp_path / "mypy.ini"
    config.write_text(CONFIG)
    root = Path(flowbus.__file__).parent.parent
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", "--cache-dir", str(tmp_path / "cache"),
         "--config-file", str(config), str(source)],
        env={**{k: v for k, v in os.environ.items() if k != "PYTHONPATH"}, "MYPYPATH": str(root)},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=MYPY_SECONDS,
    )  # fmt: skip
    errors = [line for line in result.stdout.splitlines() if ": error:" in line]
    assert len(errors) == 1, result.stdout
    assert 'incompatible type "str"; expected "int"' in errors[0]
