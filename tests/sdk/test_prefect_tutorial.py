"""A flow file in the style of Prefect's own tutorial, with only the import renamed."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import flowbus

TUTORIAL_FLOW = textwrap.dedent(
    '''
    from datetime import timedelta

    from flowbus import flow, task
    from flowbus.tasks import task_input_hash
    from flowbus.artifacts import create_markdown_artifact

    STARS = {"PrefectHQ/prefect": 17000, "pydantic/pydantic": 20000}
    attempts = {}


    def fake_github_api(repo: str) -> dict:
        """Stands in for httpx.get(...).json(): fails once per repo, like a flaky network."""
        attempts[repo] = attempts.get(repo, 0) + 1
        if attempts[repo] == 1:
            raise ConnectionError(f"GitHub API hiccup for {repo}")
        return {"stargazers_count": STARS[repo]}


    @task(retries=2, retry_delay_seconds=0.01, cache_key_fn=task_input_hash, cache_expiration=timedelta(hours=1))
    def get_stars(repo: str) -> int:
        count = fake_github_api(repo)["stargazers_count"]
        print(f"{repo} has {count} stars!")
        return count


    @flow(name="GitHub Stars", log_prints=True)
    def github_stars(repos: list[str]) -> int:
        counts = [get_stars(repo) for repo in repos]
        create_markdown_artifact(f"Total: {sum(counts)}", key="stars-report")
        return sum(counts)


    if __name__ == "__main__":
        print("TOTAL", github_stars(["PrefectHQ/prefect", "pydantic/pydantic"]))
    '''
)


def _run(script: Path, home: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "FLOWBUS_HOME": str(home), "PYTHONPATH": str(Path(flowbus.__file__).parent.parent)}
    return subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=30)


def test_prefect_tutorial_flow_runs_with_the_import_renamed(tmp_path: Path, flowbus_home: Path) -> None:
    script = tmp_path / "github_stars.py"
    script.write_text(TUTORIAL_FLOW)

    first = _run(script, flowbus_home)
    assert first.returncode == 0, first.stderr
    assert "TOTAL 37000" in first.stdout
    # Prefect's visible behaviour: the run is announced, prints become log lines,
    # the flaky call is retried, and the run finishes Completed.
    assert "Beginning flow run" in first.stderr and "for flow 'GitHub Stars'" in first.stderr
    assert "INFO    | Task run 'get_stars-" in first.stderr
    assert "PrefectHQ/prefect has 17000 stars!" in first.stderr
    assert "Retry 1/2 will start" in first.stderr
    assert "Finished in state Completed()" in first.stderr

    second = _run(script, flowbus_home)  # a new process: results come from the cache
    assert "TOTAL 37000" in second.stdout
    assert "has 17000 stars!" not in second.stderr
    assert "Finished in state Cached(type=COMPLETED)" in second.stderr
    # The artifact is kept in FLOWBUS_HOME: another process reads it back by key.
    read = subprocess.run(
        [sys.executable, "-c", "from flowbus.artifacts import Artifact; print(Artifact.get('stars-report').type)"],
        env={**os.environ, "FLOWBUS_HOME": str(flowbus_home),
             "PYTHONPATH": str(Path(flowbus.__file__).parent.parent)}, capture_output=True, text=True,
        timeout=60, check=False,
    )
    assert read.stdout.strip() == "markdown", read.stderr
