"""Storage blocks with a server: a `LocalFileSystem` saved by one process is in the
server's blocks bucket, so another process, with a home of its own, loads it by name
and by slug, as result storage and as the default storage block."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

SAVE = textwrap.dedent(
    """
    import sys
    from flowbus.filesystems import LocalFileSystem

    print(LocalFileSystem(basepath=sys.argv[1]).save("shared-results"))
    """
)

USE = textwrap.dedent(
    """
    from flowbus import flow, task
    from flowbus.filesystems import LocalFileSystem

    @task(persist_result=True, result_storage="local-file-system/shared-results", result_storage_key="by-slug")
    def by_slug() -> int:
        return 1

    @task(persist_result=True, result_storage_key="by-default")
    def by_default() -> int:
        return 2

    @flow
    def pipeline() -> int:
        return by_slug() + by_default()

    assert pipeline() == 3
    print(LocalFileSystem.load("shared-results")._block_document_id)
    """
)


def _run(code: str, env: dict[str, str], *args: str) -> str:
    done = subprocess.run([sys.executable, "-c", code, *args], env=env, capture_output=True, text=True,
                          timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_a_block_saved_through_the_server_is_result_storage_in_another_home(
        state_env: dict[str, str], tmp_path: Path) -> None:
    results = tmp_path / "results"
    saved_id = _run(SAVE, {**state_env, "FLOWBUS_HOME": str(tmp_path / "home-a")}, str(results))
    assert not (tmp_path / "home-a" / "blocks").exists()  # kept by the server, not on disk
    env_b = {**state_env, "FLOWBUS_HOME": str(tmp_path / "home-b"),
             "FLOWBUS_DEFAULT_RESULT_STORAGE_BLOCK": "local-file-system/shared-results"}
    assert _run(USE, env_b) == saved_id
    assert (results / "by-slug").read_bytes() == b"1"
    # The default block wins over the server's object store for a task naming no storage.
    assert (results / "by-default").read_bytes() == b"2"
