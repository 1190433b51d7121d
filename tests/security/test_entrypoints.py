"""Finding 1: deployments run only @flows from inside their code root, and only a
``deploy`` key may choose that code.

Real gateway over HTTP, real orchestrator and runner (warm worker processes).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp
import pytest

from events.bus import Bus
from events.entrypoints import EntrypointError, locate, parse_entrypoint
from flowbus.entrypoints import load_flow
from tests.security.conftest import KeyMaker, wait_final

D = "/api/v1/deployments"
FLOW = "from flowbus import flow\n\n@flow\ndef greet(name: str) -> str:\n    return 'hi ' + name\n"
PLAIN = "import subprocess\n\ndef shell(cmd: str) -> str:\n    return subprocess.getoutput(cmd)\n"


async def _create(session: aiohttp.ClientSession, name: str, entrypoint: str) -> tuple[int, Any]:
    async with session.post(D, json={"name": name, "flow_name": name,
                                     "entrypoint": entrypoint}) as r:
        return r.status, await r.json(content_type=None)


async def _run(session: aiohttp.ClientSession, name: str, parameters: dict[str, Any]) -> str:
    async with session.post(f"{D}/{name}/runs", json={"parameters": parameters}) as r:
        body = await r.json()
        assert r.status == 202, body
        return str(body["flow_run_id"])


async def test_a_write_key_can_run_but_not_choose_code(
    admin: aiohttp.ClientSession, client_with: KeyMaker, bus: Bus
) -> None:
    write = await client_with("write")
    status, body = await _create(write, "sneaky", "flows.py:greet")
    assert status == 403 and "'deploy' scope" in body["detail"], body
    assert await (await bus.kv(bus.layout.deployments)).get("sneaky") is None

    deployer = await client_with("deploy")
    status, body = await _create(deployer, "greet", "flows.py:greet")
    assert status == 201, body
    async with write.patch(f"{D}/greet", json={"parameters": {"name": "x"}}) as r:
        assert r.status == 200, await r.text()
    for change in ({"entrypoint": "other.py:greet"}, {"code_digest": "sha256:" + "0" * 64}):
        async with write.patch(f"{D}/greet", json=change) as r:
            body = await r.json()
            assert r.status == 403 and "'deploy' scope" in body["detail"], body
            assert next(iter(change)) in body["detail"]
    async with write.post(f"{D}/greet/pause") as r:
        assert r.status == 200
    async with deployer.patch(f"{D}/greet", json={"entrypoint": "other.py:greet"}) as r:
        assert r.status == 200 and (await r.json())["entrypoint"] == "other.py:greet"


@pytest.mark.parametrize(("entrypoint", "rule"), [
    ("/tmp/evil.py:main", "absolute"),
    ("\\\\host\\share\\evil.py:main", "absolute"),
    ("C:/evil.py:main", "absolute"),
    ("../evil.py:main", "'..'"),
    ("flows/../../evil.py:main", "'..'"),
    ("flows.py:os.system", "not a Python name"),
    ("subprocess;id:main", "neither a .py file nor a dotted module"),
])
async def test_escaping_entrypoints_are_422_naming_the_rule_and_not_stored(
    admin: aiohttp.ClientSession, bus: Bus, entrypoint: str, rule: str
) -> None:
    status, body = await _create(admin, "escape", entrypoint)
    assert status == 422 and rule in body["detail"], body
    assert body["errors"][0]["field"] == "entrypoint"
    assert await (await bus.kv(bus.layout.deployments)).get("escape") is None
    async with admin.post(D, json={"name": "ok", "flow_name": "ok",
                                   "entrypoint": "flows.py:greet"}) as r:
        assert r.status == 201
    async with admin.patch(f"{D}/ok", json={"entrypoint": entrypoint}) as r:
        assert r.status == 422 and rule in (await r.json())["detail"]
    stored = await (await bus.kv(bus.layout.deployments)).get_json("ok")
    assert stored["entrypoint"] == "flows.py:greet"


@pytest.mark.usefixtures("plane")
async def test_the_runner_refuses_installed_modules_and_plain_functions(
    admin: aiohttp.ClientSession, bus: Bus, code_root: Path, tmp_path: Path
) -> None:
    (code_root / "flows.py").write_text(FLOW)
    (code_root / "tools.py").write_text(PLAIN)
    marker = tmp_path / "pwned"
    cases = {"stdlib": "subprocess:getoutput", "plain": "tools.py:shell",
             "ok": "flows.py:greet"}
    for name, entrypoint in cases.items():
        status, body = await _create(admin, name, entrypoint)
        assert status == 201, body
    runs = {name: await _run(admin, name, {"cmd": f"id > {marker}"} if name != "ok"
                             else {"name": "you"}) for name in cases}
    final = {name: await wait_final(bus, run_id) for name, run_id in runs.items()}
    assert final["ok"].state.name == "Completed", final["ok"].state.message
    assert final["stdlib"].state.name == "Failed"
    assert "module 'subprocess' not found in the code root" in (final["stdlib"].state.message or "")
    assert final["plain"].state.name == "Failed"
    assert "not a @flow" in (final["plain"].state.message or "")
    assert not marker.exists()


def test_the_loader_refuses_symlinks_out_of_the_code_root(tmp_path: Path) -> None:
    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (outside / "evil.py").write_text(PLAIN)
    (root / "link.py").symlink_to(outside / "evil.py")
    (root / "pkg").symlink_to(outside, target_is_directory=True)
    for text in ("link.py:shell", "pkg/evil.py:shell", "pkg.evil:shell"):
        with pytest.raises(EntrypointError, match="outside the code root"):
            locate(parse_entrypoint(text), root)
        with pytest.raises(EntrypointError, match="outside the code root"):
            load_flow(text, root)


def test_a_module_name_taken_by_an_installed_one_loads_the_code_root_s_file(
    tmp_path: Path
) -> None:
    (tmp_path / "json.py").write_text(FLOW.replace("greet", "loads"))
    flow = load_flow("json:loads", tmp_path)  # the code root's json.py, not the stdlib's
    assert flow.name == "loads" and flow(name="x") == "hi x"


def test_two_code_roots_with_the_same_package_each_load_their_own(tmp_path: Path) -> None:
    for version in ("one", "two"):
        package = tmp_path / version / "shop"
        package.mkdir(parents=True)
        (package / "__init__.py").write_text("")
        (package / "flows.py").write_text(FLOW.replace("'hi '", f"'{version} '"))
    first = load_flow("shop.flows:greet", tmp_path / "one")
    second = load_flow("shop.flows:greet", tmp_path / "two")
    assert (first(name="a"), second(name="a")) == ("one a", "two a")
