"""A flow project on disk, and the command line run in-process against the test NATS."""

from __future__ import annotations

import asyncio
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from flowbus.cli import cli

FLOWS = '''
from flowbus import flow


@flow
def greet(name: str = "world", times: int = 1) -> str:
    """Say hello."""
    return f"Hello, {name}!" * times


def not_a_flow(x: int) -> int:
    return x
'''

PROJECT = '''
deployments:
  - name: hello
    entrypoint: flows.py:greet
    parameters: {name: you}
    triggers:
      - expect: ["com.example.hello"]
        parameters: {name: "{{ event.data.name }}"}
    schedules:
      - cron: "0 9 * * *"
        timezone: Europe/Berlin
    tags: [demo]
'''


def write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return root


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A directory with flows.py and a flowbus.yaml deploying greet."""
    return write(tmp_path / "proj", {"flows.py": FLOWS, "flowbus.yaml": PROJECT})


class Cli:
    """``flowbus ...`` in this process, on a thread (commands run their own event loop)."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = {k: v for k, v in env.items() if k.startswith("FLOWBUS_")}

    async def __call__(self, *args: str) -> Result:
        runner = CliRunner()
        return await asyncio.to_thread(runner.invoke, cli, list(args), env=self.env,
                                       catch_exceptions=False)


@pytest.fixture
def flowbus_cli(flowbus_env: dict[str, str]) -> Cli:
    return Cli(flowbus_env)
