"""``{{ $ENV_VAR }}`` and ``{{ prefect.variables.x }}`` in a prefect.yaml, as ``prefect deploy``.

Checked on Prefect 3.8.8 first (its deploy resolves variables, then environment
variables): a variable that is the whole value keeps its JSON type, inside text it
is its ``str()``; an environment variable is text; ``{{ event.* }}`` in triggers is
left for the trigger. Where Prefect puts ``""`` for a missing variable or leaves
``{{ $UNSET }}`` as it is, flowbus refuses, naming the key.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from events.bus import Bus
from events.deployments import get_deployment
from flowbus.client import get_client
from gateway.service import RunningGateway, running
from gateway.settings import GatewaySettings

from .conftest import Cli

KEY = "deploy-tests-admin-key-0123456789abcdef"

TEMPLATED = """\
deployments:
- name: "hello-{{ prefect.variables.region }}"
  entrypoint: flows.py:greet
  tags: ["{{ $TEAM }}", "fixed"]
  parameters:
    name: "{{ prefect.variables.greeting }}"
    times: "{{ prefect.variables.times }}"
  description: "owned by {{ $TEAM }} in {{ prefect.variables.region }} ({{ prefect.variables.times }}x)"
  work_pool:
    name: "{{ $POOL }}"
    job_variables: {image: "{{ build-image.image }}"}
  build:
  - prefect_docker.deployments.steps.build_docker_image: {id: build-image}
  triggers:
  - expect: [com.example.hello]
    parameters: {name: "{{ event.data.name }}"}
"""


@pytest.fixture
async def api(bus: Bus, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[RunningGateway]:
    async with running(bus, GatewaySettings(port=0, admin_api_key=KEY, wait_max_seconds=1)) as gw:
        monkeypatch.setenv("FLOWBUS_API_URL", gw.url + "/api/v1")
        monkeypatch.setenv("FLOWBUS_API_KEY", KEY)
        yield gw


@pytest.fixture
async def variables(api: RunningGateway) -> None:
    async with get_client() as client:
        await client.create_variable("region", "eu")
        await client.create_variable("greeting", "Grüezi")
        await client.create_variable("times", 3)


def write(project: Path, text: str) -> Path:
    (project / "flowbus.yaml").unlink(missing_ok=True)
    path = project / "prefect.yaml"
    path.write_text(text)
    return path


async def test_variables_and_environment_fill_the_deployment(
    project: Path, flowbus_cli: Cli, bus: Bus, variables: None,
) -> None:
    path = write(project, TEMPLATED)
    flowbus_cli.env.update({"TEAM": "data", "POOL": "gpu"})
    result = await flowbus_cli("deploy", "-f", str(path))
    assert result.exit_code == 0, result.output
    stored = await get_deployment(bus, "hello-eu")
    assert stored.parameters == {"name": "Grüezi", "times": 3}
    assert stored.tags == ["data", "fixed"] and stored.work_pool == "gpu"
    assert stored.description == "owned by data in eu (3x)"
    assert stored.triggers[0]["parameters"] == {"name": "{{ event.data.name }}"}
    assert "job_variables: ignored" in result.stderr and "build: ignored" in result.stderr


@pytest.mark.parametrize(("edit", "message"), [
    (lambda t: t.replace("{{ prefect.variables.greeting }}", "{{ prefect.variables.absent }}"),
     "parameters.name: '{{ prefect.variables.absent }}' names the variable 'absent', which the server has not got"),
    (lambda t: t.replace('"{{ $POOL }}"', '"{{ $FLOWBUS_TEST_UNSET_VAR }}"'),
     "work_pool.name: the environment variable 'FLOWBUS_TEST_UNSET_VAR' of '{{ $FLOWBUS_TEST_UNSET_VAR }}' is not set"),
    (lambda t: t.replace("{{ prefect.variables.greeting }}", "{{ prefect.blocks.secret.token }}"),
     "parameters.name: '{{ prefect.blocks.secret.token }}' is a block reference"),
    (lambda t: t.replace("{{ prefect.variables.greeting }}", "{{ build-image.image }}"),
     "parameters.name: '{{ build-image.image }}' is a step output or an unknown placeholder"),
    (lambda t: t.replace('["{{ $TEAM }}", "fixed"]', '["{{ $TEAM }}", "{{ event.id }}"]'),
     "tags[1]: '{{ event.id }}' is a step output or an unknown placeholder"),
])
async def test_what_cannot_be_resolved_is_refused_naming_the_key(
    project: Path, flowbus_cli: Cli, bus: Bus, variables: None, edit: object, message: str,
) -> None:
    path = write(project, edit(TEMPLATED))  # type: ignore[operator]
    flowbus_cli.env.update({"TEAM": "data", "POOL": "gpu"})
    result = await flowbus_cli("deploy", "-f", str(path))
    assert result.exit_code == 1, result.output
    assert "prefect.yaml: deployment 'hello-{{ prefect.variables.region }}': " + message in result.stderr, \
        result.stderr
    assert await (await bus.kv(bus.layout.deployments)).keys() == []
