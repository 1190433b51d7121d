"""`flowbus deploy` of a Prefect prefect.yaml: what carries over, what is reported,
what is refused (hostile and malformed files included)."""

from __future__ import annotations

from pathlib import Path

import pytest

from events.bus import Bus
from events.deployments import get_deployment

from .conftest import Cli

PREFECT_YAML = """\
name: my-project
prefect-version: 3.8.8
build: null
push: null
pull:
- prefect.deployments.steps.set_working_directory:
    directory: /opt/flows
deployments:
- name: hello-deploy
  version: "1.0"
  tags: [etl, nightly]
  description: says hello
  entrypoint: flows.py:greet
  parameters: {name: world}
  work_pool:
    name: default
    work_queue_name: null
    job_variables: {}
  schedules:
  - cron: "0 9 * * *"
    timezone: Europe/Berlin
    slug: morning
  - interval: 3600
    anchor_date: 2024-01-01T00:00:00Z
  triggers:
  - type: event
    enabled: true
    match:
      prefect.resource.id: my.resource.*
    expect: [external.resource.pinged]
    parameters:
      name: "{{ event.resource.id }}"
  concurrency_limit: 2
"""


@pytest.fixture
def prefect_project(project: Path) -> Path:
    (project / "flowbus.yaml").unlink()
    (project / "prefect.yaml").write_text(PREFECT_YAML)
    return project


async def test_a_prefect_yaml_deploys_with_a_message_per_ignored_key(
    prefect_project: Path, flowbus_cli: Cli, bus: Bus,
) -> None:
    result = await flowbus_cli("deploy", "-f", str(prefect_project / "prefect.yaml"), "--all")
    assert result.exit_code == 0, result.output
    assert "created deployment hello-deploy" in result.stdout
    notes = result.stderr.splitlines()
    assert any("name: ignored" in n for n in notes) and any("set_working_directory: ignored" in n for n in notes)
    assert any("slug: ignored" in n for n in notes)
    stored = await get_deployment(bus, "hello-deploy")
    assert (stored.entrypoint, stored.parameters, stored.tags) == ("flows.py:greet", {"name": "world"},
                                                                   ["etl", "nightly"])
    assert (stored.version, stored.description, stored.concurrency_limit) == ("1.0", "says hello", 2)
    assert [s.get("cron") or s.get("interval") for s in stored.schedules] == ["0 9 * * *", "PT1H"]
    assert stored.schedules[0]["timezone"] == "Europe/Berlin"
    assert stored.triggers[0]["expect"] == ["external.resource.pinged"]
    assert stored.triggers[0]["parameters"] == {"name": "{{ event.resource.id }}"}


async def test_prefect_yaml_is_used_when_the_directory_has_no_flowbus_yaml(
    prefect_project: Path, flowbus_env: dict[str, str], bus: Bus,
) -> None:
    import asyncio

    from .test_cli import _flowbus

    done = await asyncio.to_thread(_flowbus, "deploy", "-n", "hello-deploy", env=flowbus_env, cwd=prefect_project)
    assert done.returncode == 0, done.stderr
    assert (await get_deployment(bus, "hello-deploy")).flow_name == "greet"


@pytest.mark.parametrize(("edit", "message"), [
    (lambda t: t.replace("- prefect.deployments.steps.set_working_directory:\n    directory: /opt/flows",
                         "- prefect.deployments.steps.git_clone:\n    repository: https://example.com/x.git"),
     "step 'prefect.deployments.steps.git_clone' is not supported"),
    (lambda t: t.replace("  concurrency_limit: 2", "  colour: red"), "unknown key 'colour'"),
    (lambda t: t + "surprise: 1\n", "unknown top-level key 'surprise'"),
    (lambda t: t.replace("    slug: morning", "    catchup: true"), "catchup: true is not supported"),
    (lambda t: t.replace("    slug: morning", "    day_or: false"), "day_or: false is not supported"),
    (lambda t: t.replace("entrypoint: flows.py:greet", "entrypoint: ../../etc/evil.py:fn"), "contains '..'"),
    (lambda t: t.replace("name: hello-deploy", "name: 'bad name; rm -rf /'"), "field name"),
    (lambda t: t.replace("    name: default\n", "    name: default\n    priority: 1\n"),
     "unknown key work_pool.'priority'"),
    (lambda t: t.replace("  concurrency_limit: 2", "  concurrency_limit: {limit: 2, collision_strategy: CANCEL_NEW}"),
     "collision_strategy 'CANCEL_NEW' is not supported"),
    (lambda t: "deployments: [", "not valid YAML"),
    (lambda t: "- just\n- a list\n", "non-empty 'deployments' list"),
    (lambda t: "deployments: []\n", "non-empty 'deployments' list"),
    (lambda t: "deployments: [42]\n", "deployments[0] must be a mapping"),
    (lambda t: "a: &a [*a, *a]\ndeployments: [{name: x, entrypoint: flows.py:greet}]\n", "expands to over"),
    (lambda t: "x: " + "y" * (1024 * 1024 + 10) + "\n", "is over 1048576 bytes"),
    (lambda t: "l0: &l0 [a, a, a, a, a, a, a, a, a, a]\n" + "".join(
        f"l{i}: &l{i} [*l{i-1}, *l{i-1}, *l{i-1}, *l{i-1}, *l{i-1}, *l{i-1}, *l{i-1}, *l{i-1}, *l{i-1}]\n"
        for i in range(1, 9)) + t.replace("parameters: {name: world}", "parameters: {name: *l8}"),
     "expands to over 100000 values"),
    (lambda t: "\xff\xfe not text", "cannot read"),
])
async def test_a_bad_prefect_yaml_is_refused_and_deploys_nothing(
    prefect_project: Path, flowbus_cli: Cli, bus: Bus, edit: object, message: str,
) -> None:
    path = prefect_project / "prefect.yaml"
    text = edit(PREFECT_YAML)  # type: ignore[operator]
    if text.startswith("\xff"):
        path.write_bytes(b"\xff\xfe not text")
    else:
        path.write_text(text)
    result = await flowbus_cli("deploy", "-f", str(path))
    assert result.exit_code == 1, result.output
    assert message in result.stderr, result.stderr
    assert await (await bus.kv(bus.layout.deployments)).keys() == []


async def test_all_and_name_exclude_each_other(prefect_project: Path, flowbus_cli: Cli) -> None:
    result = await flowbus_cli("deploy", "-f", str(prefect_project / "prefect.yaml"), "--all", "-n", "x")
    assert result.exit_code == 2 and "exclude each other" in result.output
