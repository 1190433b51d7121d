"""docs/sdk.md's asset example runs as a user would run it, and publishes what the page says."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def example(heading: str) -> str:
    """The first ```python block under ``heading`` in docs/sdk.md."""
    text = (ROOT / "docs" / "sdk.md").read_text()
    section = text[text.index(f"\n## {heading}\n"):]
    match = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert match, f"no python example under {heading!r}"
    return match.group(1)


def test_the_asset_example_runs_and_publishes_its_materialisations(tmp_path: Path) -> None:
    script = tmp_path / "assets_example.py"
    script.write_text(example("Assets"))
    events_file = tmp_path / "events.jsonl"
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLOWBUS_")}
    env.update(FLOWBUS_HOME=str(tmp_path / "home"), FLOWBUS_EVENTS_FILE=str(events_file))
    done = subprocess.run([sys.executable, str(script)], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "1"
    lines = [json.loads(line) for line in events_file.read_text().splitlines()]
    assets = [(e["type"], e["subject"]) for e in lines if e.get("type", "").startswith("flowbus.asset.")]
    assert assets == [
        ("flowbus.asset.materialization.succeeded", "s3://lake/raw/orders.json"),
        ("flowbus.asset.referenced", "postgres://shop/customers"),
        ("flowbus.asset.referenced", "s3://lake/raw/orders.json"),
        ("flowbus.asset.materialization.succeeded", "s3://lake/reports/orders.csv"),
    ]
    report = next(e["data"] for e in lines if e.get("subject") == "s3://lake/reports/orders.csv")
    assert report["metadata"] == {"rows": 1} and report["materialized_by"] == "pandas"
    assert report["asset"]["properties"] == {"name": "Orders report", "owners": ["data-team"]}
