"""flow.serve() and flowbus.serve(): register deployments and run them in-process."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from runner_helpers import schedule, wait_final

from events.bus import Bus
from events.deployments import get_deployment, read_result
from events.errors import BusUnavailable, NotFound
from flowbus import flow, serve
from flowbus.exceptions import ConfigurationError

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = """
import flowbus
from flowbus import flow

@flow
def greet(name: str = "world") -> str:
    return f"hello {name}"

@flow
async def shout(word: str) -> str:
    return word.upper()

if __name__ == "__main__":
    import sys
    if sys.argv[1] == "one":
        greet.serve("greeter", parameters={"name": "default"}, tags=["demo"],
                    triggers=[{"expect": ["com.example.greet"],
                               "parameters": {"name": "{{ event.data.name }}"}}])
    else:
        flowbus.serve(greet.to_deployment("greeter2"),
                      shout.to_deployment("shouter", interval=3600), limit=2)
"""


async def _deployment(bus: Bus, name: str) -> object:
    found: list[object] = []

    async def look() -> None:
        try:
            found.append(await get_deployment(bus, name))
        except NotFound:
            pass

    for _ in range(200):
        await look()
        if found:
            return found[0]
        await asyncio.sleep(0.05)
    raise AssertionError(f"deployment {name} never registered")


def _serve(tmp_path: Path, env: dict[str, str], mode: str) -> subprocess.Popen[bytes]:
    script = tmp_path / "served.py"
    script.write_text(textwrap.dedent(SCRIPT))
    env = {**env, "PYTHONPATH": str(ROOT), "FLOWBUS_RUNNER_FETCH_WAIT": "0.2"}
    return subprocess.Popen([sys.executable, str(script), mode], cwd=tmp_path, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


async def test_flow_serve_registers_the_deployment_and_runs_it(
    bus: Bus, flowbus_env: dict[str, str], tmp_path: Path
) -> None:
    process = _serve(tmp_path, flowbus_env, "one")
    try:
        deployment = await _deployment(bus, "greeter")
        from events.records import Deployment

        assert isinstance(deployment, Deployment)
        assert deployment.work_pool == "serve-greeter"
        assert deployment.entrypoint == "served.py:greet"
        assert deployment.tags == ["demo"] and deployment.parameters == {"name": "default"}
        assert deployment.triggers[0]["expect"] == ["com.example.greet"]
        run = await wait_final(bus, await schedule(bus, deployment, {"name": "bus"}))
        assert run.state.name == "Completed"
        assert await read_result(bus, run) == "hello bus"
        process.send_signal(signal.SIGTERM)
        assert process.wait(10) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)


async def test_flowbus_serve_runs_several_deployments_in_one_pool(
    bus: Bus, flowbus_env: dict[str, str], tmp_path: Path
) -> None:
    process = _serve(tmp_path, flowbus_env, "two")
    try:
        from events.records import Deployment

        greeter = await _deployment(bus, "greeter2")
        shouter = await _deployment(bus, "shouter")
        assert isinstance(greeter, Deployment) and isinstance(shouter, Deployment)
        assert greeter.work_pool == shouter.work_pool == "serve-greeter2"
        assert shouter.schedules[0]["interval"] == "PT1H"
        first = await wait_final(bus, await schedule(bus, greeter))
        second = await wait_final(bus, await schedule(bus, shouter, {"word": "hey"}))
        assert await read_result(bus, first) == "hello world"
        assert await read_result(bus, second) == "HEY"
        process.send_signal(signal.SIGINT)
        assert process.wait(10) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)


@flow
def simple() -> int:
    return 1


def test_serve_without_a_server_says_to_set_the_nats_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FLOWBUS_NATS_URL", raising=False)
    with pytest.raises(ConfigurationError, match="FLOWBUS_NATS_URL"):
        simple.serve("simple")


def test_serve_with_an_unreachable_server_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLOWBUS_NATS_URL", "nats://127.0.0.1:1")
    with pytest.raises(BusUnavailable, match=r"cannot reach NATS at nats://127.0.0.1:1"):
        simple.serve("simple")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"triggers": [{"type": "telepathy"}]}, "trigger type 'telepathy' is unknown"),
        ({"triggers": [{"expect": ["a b"]}]}, "trigger"),
        ({"cron": "every day"}, "schedule"),
        ({"interval": -5}, "schedule"),
        ({"concurrency_limit": 0}, "concurrency_limit"),
        ({"work_pool": "no spaces allowed"}, "work_pool"),
        ({"parameters": {"x": "{{ event.data.x "}}, "trigger"),
    ],
)
def test_to_deployment_refuses_bad_definitions(options: dict[str, object], message: str) -> None:
    if "parameters" in options:  # a template only matters inside a trigger
        options = {"triggers": [{"expect": ["a.b"], "parameters": options["parameters"]}]}
    with pytest.raises(ConfigurationError, match=message):
        simple.to_deployment("simple", **options)  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["", "has space", "x" * 200, "../etc"])
def test_to_deployment_refuses_bad_names(name: str) -> None:
    with pytest.raises(ConfigurationError, match="deployment"):
        simple.to_deployment(name or " ")


def test_serve_refuses_duplicates_and_bad_limits(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLOWBUS_NATS_URL", "nats://127.0.0.1:1")
    one = simple.to_deployment("one")
    with pytest.raises(ConfigurationError, match="same deployment name twice"):
        serve(one, one)
    with pytest.raises(ConfigurationError, match="limit must be at least 1"):
        serve(one, limit=0)
    with pytest.raises(ConfigurationError, match="at least one deployment"):
        serve()
    with pytest.raises(ConfigurationError, match="share one work pool"):
        serve(simple.to_deployment("a", work_pool="p1"), simple.to_deployment("b", work_pool="p2"))
