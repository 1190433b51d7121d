"""``flowbus automation`` run as a user runs it, against the test NATS, bad input included.

The lifecycle and stdin tests start real ``flowbus`` processes; the refusal and failure
listing tests run the same command in this process (a process start costs seconds on a
loaded machine, and what they check is the command's answer, not the process).
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
from pathlib import Path

from events import automation_store as store
from events.bus import Bus
from orchestrator.service import Orchestrator
from tests.automations.support import Receiver, event, wait_events, wait_until
from tests.cli_here import flowbus_here

ROOT = Path(__file__).resolve().parents[2]

DEFINITION = """
name: page on failure
description: tell the on-call
trigger:
  expect: [flowbus.flow-run.Failed]
actions:
  - type: send-notification
    channel: oncall
    subject: "{{ flow_run.name }} failed"
    body: "{{ event.data.state.message }}"
"""


def flowbus(*args: str, env: dict[str, str], stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "flowbus.cli", "automation", *args], env=env, cwd=ROOT, input=stdin,
        capture_output=True, text=True, timeout=30, check=False,
    )


async def run(*args: str, env: dict[str, str], stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(flowbus, *args, env=env, stdin=stdin)


async def run_here(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return await flowbus_here("automation", *args, env=env)


async def test_create_ls_inspect_pause_resume_delete(flowbus_env: dict[str, str], bus: Bus, tmp_path: Path) -> None:
    path = tmp_path / "auto.yaml"
    path.write_text(DEFINITION)
    made = await run("create", "-f", str(path), env=flowbus_env)
    assert made.returncode == 0, made.stderr
    (stored,) = await store.list_automations(bus)
    assert made.stdout.strip() == f"created automation 'page on failure' ({stored.id})"
    listed = await run("ls", env=flowbus_env)
    [row] = [line for line in listed.stdout.splitlines() if stored.id in line]
    assert [c.strip() for c in row.strip("│ ").split("│")] == [
        stored.id, "page on failure", "enabled", "send-notification"], listed.stdout
    # The program ran above; the other commands' answers come from them run here.
    inspected = await run_here("inspect", "page on failure", env=flowbus_env)
    assert json.loads(inspected.stdout)["actions"][0]["channel"] == "oncall"
    assert (await run_here("pause", stored.id, env=flowbus_env)).returncode == 0
    assert (await store.get_automation(bus, stored.id)).enabled is False
    assert (await run_here("resume", "page on failure", env=flowbus_env)).returncode == 0
    assert (await store.get_automation(bus, stored.id)).enabled is True
    deleted = await run_here("delete", stored.id, env=flowbus_env)
    assert deleted.returncode == 0 and await store.list_automations(bus) == []


async def test_bad_definitions_are_refused_naming_the_field(flowbus_env: dict[str, str], bus: Bus,
                                                             tmp_path: Path) -> None:
    cases = {
        "unknown.yaml": DEFINITION.replace("send-notification", "send-carrier-pigeon"),
        "template.yaml": DEFINITION.replace('"{{ flow_run.name }} failed"', '"{{ flow_run.name"'),
        "broken.yaml": "name: [unclosed",
        "scalar.yaml": "just words",
        "loop.yaml": DEFINITION.replace("- type: send-notification", "- type: run-deployment\n    deployment: etl\n  - type: send-notification"),
    }
    expected = {
        "unknown.yaml": "actions.0: type 'send-carrier-pigeon' is not known; one of: ",
        "template.yaml": "actions.0.subject",
        "broken.yaml": "is not valid YAML or JSON",
        "scalar.yaml": "an automation is an object, not str",
        "loop.yaml": "would trigger this automation again",
    }
    for name, text in cases.items():
        (tmp_path / name).write_text(text)
        result = await run_here("create", "-f", str(tmp_path / name), env=flowbus_env)
        assert result.returncode != 0 and expected[name] in result.stderr, (name, result.stderr)
    missing = await run_here("create", "-f", str(tmp_path / "nope.yaml"), env=flowbus_env)
    assert missing.returncode == 2 and "cannot read" in missing.stderr
    big = tmp_path / "big.yaml"
    big.write_text("x" * (1024 * 1024 + 10))
    assert "over 1048576 bytes" in (await run_here("create", "-f", str(big), env=flowbus_env)).stderr
    assert await store.list_automations(bus) == []
    unknown = await run_here("pause", "ghost", env=flowbus_env)
    assert unknown.returncode == 1 and "automation 'ghost' not found" in unknown.stderr


async def test_failures_list_redrive_and_purge(
    flowbus_env: dict[str, str], bus: Bus, orchestrator: Orchestrator, receiver: Receiver
) -> None:
    # Dead letters as the orchestrator leaves them: a webhook answering 404 to two events.
    receiver.statuses = [404] * 3
    made = await store.create_automation(bus, {
        "name": "hook", "trigger": {"expect": ["shop.order.created"]},
        "actions": [{"type": "call-webhook", "url": receiver.url, "body": {"n": "{{ event.data.n }}"}}],
    })

    async def known() -> bool:
        return made.id in orchestrator.automations.catalog.automations

    await wait_until(known)
    for n in (1, 2):
        await bus.publish(event("shop.order.created", data={"n": n}))

    async def two_letters() -> bool:
        return len(await store.list_dead_letters(bus)) == 2

    await wait_until(two_letters)
    letters = sorted(await store.list_dead_letters(bus), key=lambda d: d.key)
    listed = await run_here("failures", env=flowbus_env)
    for letter in letters:
        assert letter.automation_name == "hook" and "404" in letter.reason
        line = (f"{letter.key}  {letter.failed_at.isoformat(timespec='seconds')}  hook  "
                f"action 0 (call-webhook): {letter.reason}")
        assert line in listed.stdout
    first = letters[0].key
    redriven = await run_here("failures", "redrive", first, env=flowbus_env)
    assert redriven.returncode == 0 and f"redrive requested for {first}" in redriven.stdout
    await wait_events(bus, "flowbus.automation.action.failed", 3)  # the redrive ran and failed again
    bad = await run_here("failures", "redrive", "nope", env=flowbus_env)
    assert bad.returncode == 1 and "no dead letter with key 'nope'" in bad.stderr
    assert (await run_here("failures", "purge", env=flowbus_env)).returncode == 2
    purged = await run_here("failures", "purge", "--all", env=flowbus_env)
    assert "purged 2 dead letter(s)" in purged.stdout
    assert "no failed actions" in (await run_here("failures", env=flowbus_env)).stdout


async def test_channels_are_set_from_stdin_and_listed(flowbus_env: dict[str, str], bus: Bus) -> None:
    saved = await run("channel", "set", "-f", "-", env=flowbus_env,
                      stdin='{"name": "oncall", "config": {"kind": "slack", "url": "https://hooks.example/x"}}')
    assert saved.returncode == 0 and "saved channel 'oncall' (slack)" in saved.stdout
    # The program read its stdin above; the other answers come from the commands run here.
    assert re.search(r"oncall\s+│\s+slack", (await run_here("channel", "ls", env=flowbus_env)).stdout)
    bad = await flowbus_here("automation", "channel", "set", "-f", "-", env=flowbus_env,
                             stdin='{"name": "x", "config": {"kind": "slack", "url": "javascript:alert(1)"}}')
    assert bad.returncode == 1 and "config.url" in bad.stderr
