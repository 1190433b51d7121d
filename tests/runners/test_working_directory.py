"""A folder of the working directory named like an installed package never shadows it."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

PROBE = textwrap.dedent("""
    import os, sys
    if __name__ == "__main__":
        os.chdir(sys.argv[1])  # as a runner (or `flowbus dev`) started there
        from runners.workers import _context
        ctx = _context()
        for code in ("from flowbus import flow", "from runners.worker import worker_main"):
            child = ctx.Process(target=exec, args=(code,))
            child.start()
            child.join(60)
            print(child.exitcode, flush=True)
        print("PYTHONSAFEPATH" in os.environ)
""")


def test_workers_import_flowbus_from_a_directory_holding_folders_of_the_same_names(
    tmp_path: Path,
) -> None:
    project = tmp_path / "project"
    for name in ("flowbus", "runners", "events"):
        (project / name).mkdir(parents=True)  # namespace folders, as in a checkout's parent
    probe = tmp_path / "probe" / "probe.py"
    probe.parent.mkdir()
    probe.write_text(PROBE)
    done = subprocess.run([sys.executable, str(probe), str(project)], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    # Both imports work in a worker; the runner's own environment is left as it was.
    assert done.stdout.split() == ["0", "0", "False"], done.stdout + done.stderr
