"""The README's two commands stay true: CI runs the test one, the e2e test the main job."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    return re.findall(r"```bash\n(.+?)\n```", text)[:2]


def test_the_readme_starts_with_the_run_and_test_commands() -> None:
    run, test = readme_commands()
    assert run.endswith("flowbus dev --project examples/hello")
    assert test.endswith(".venv/bin/pytest")
    assert (ROOT / "examples" / "hello" / "flowbus.yaml").is_file()


def test_ci_runs_exactly_the_readme_test_command() -> None:
    _, test = readme_commands()
    assert test in (ROOT / ".ci" / "run").read_text().splitlines()


def test_the_end_to_end_test_runs_the_readme_main_job() -> None:
    run, _ = readme_commands()
    e2e = (ROOT / "tests" / "test_end_to_end.py").read_text()
    assert '"dev"' in e2e and '"--project", "examples/hello"' in e2e
    assert "--project examples/hello" in run
