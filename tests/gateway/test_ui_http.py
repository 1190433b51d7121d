"""The web UI over plain HTTP: the session cookie, CSRF, scopes, the Run form, hostile input."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp
from gateway_helpers import ADMIN_KEY, stored_events

from events.bus import Bus
from gateway.service import RunningGateway

SCHEMA = {"type": "object", "properties": {
    "n": {"type": "integer", "title": "n"},
    "ratio": {"type": "number", "title": "ratio", "default": 0.5},
    "mode": {"enum": ["fast", "slow"], "title": "mode", "default": "fast"},
    "items": {"type": "array", "title": "items"},
    "loud": {"type": "boolean", "title": "loud", "default": False},
}, "required": ["n"]}


async def make_key(client: aiohttp.ClientSession, scope: str) -> str:
    async with client.post("/api/v1/api-keys", json={"name": scope, "scopes": [scope]}) as r:
        assert r.status == 201
        return str((await r.json())["key"])


async def make_deployment(client: aiohttp.ClientSession, name: str = "calc") -> None:
    async with client.post("/api/v1/deployments", json={
            "name": name, "flow_name": "calc", "parameter_schema": SCHEMA}) as r:
        assert r.status == 201, await r.text()


async def browser(gateway: RunningGateway, key: str) -> aiohttp.ClientSession:
    """A cookie-keeping client logged in with ``key``."""
    session = aiohttp.ClientSession(base_url=gateway.url, cookie_jar=aiohttp.CookieJar(unsafe=True))
    async with session.post("/ui/login", data={"api_key": key, "next": "/ui/runs"},
                            allow_redirects=False) as r:
        assert r.status == 303 and r.headers["Location"] == "/ui/runs"
    return session


async def csrf_of(session: aiohttp.ClientSession, path: str) -> str:
    async with session.get(path) as r:
        assert r.status == 200
        found = re.search(r'name="csrf-token" content="([^"]+)"', await r.text())
    assert found
    return found.group(1)


async def run_requests(bus: Bus) -> list[dict[str, Any]]:
    return [e.data for e in await stored_events(bus)
            if e.type == "flowbus.deployment.run-requested"]


async def test_the_ui_asks_for_a_key_once_and_keeps_it_in_a_strict_httponly_cookie(
    gateway: RunningGateway, anonymous: aiohttp.ClientSession, client: aiohttp.ClientSession,
) -> None:
    async with anonymous.get("/ui/runs?state=Failed", allow_redirects=False) as r:
        assert r.status == 302
        location = urlsplit(r.headers["Location"])
        assert location.path == "/ui/login"
        assert parse_qs(location.query) == {"next": ["/ui/runs?state=Failed"]}
    async with anonymous.post("/ui/login", data={"api_key": "wrong"}, allow_redirects=False) as r:
        assert r.status == 401 and "unknown" in await r.text()
        assert "flowbus_session" not in r.cookies
    key = await make_key(client, "read")
    async with anonymous.post("/ui/login", data={"api_key": key, "next": "/ui"},
                              allow_redirects=False) as r:
        assert r.status == 303
        cookie = r.cookies["flowbus_session"]
        assert cookie["httponly"] and cookie["samesite"] == "Strict" and cookie["path"] == "/ui"
    session = await browser(gateway, key)
    async with session:
        for path in ("/ui", "/ui/runs", "/ui/deployments"):
            async with session.get(path) as r:
                assert r.status == 200 and key not in await r.text()


async def test_a_partial_or_live_request_without_a_session_gets_401_and_the_login_page_to_open(
    anonymous: aiohttp.ClientSession,
) -> None:
    # htmx would follow a redirect inside the page and swap the login form into the table.
    shown = {"HX-Request": "true", "HX-Current-URL": "http://example.test/ui/runs?state=Failed"}
    for path, headers in (("/ui/runs/rows?state=Failed", shown),
                          ("/ui/runners/rows", {"HX-Request": "true"}),
                          ("/ui/runs/live", {"Accept": "text/event-stream"})):
        async with anonymous.get(path, headers=headers, allow_redirects=False) as r:
            assert r.status == 401, path
            location = urlsplit(r.headers["HX-Redirect"])
            assert location.path == "/ui/login"
            target = parse_qs(location.query)["next"]
            assert target == (["/ui/runs?state=Failed"] if path.startswith("/ui/runs/rows")
                              else ["/ui"]), path
            assert "<form" not in await r.text()
    # A page the browser shows elsewhere is never a post-login target.
    hostile = {"HX-Request": "true", "HX-Current-URL": "https://evil.test//evil.test/x"}
    async with anonymous.get("/ui/runs/rows", headers=hostile, allow_redirects=False) as r:
        assert r.status == 401
        assert parse_qs(urlsplit(r.headers["HX-Redirect"]).query)["next"] == ["/ui"]


async def test_a_revoked_key_ends_the_session(start_gateway: Any, clock: Any) -> None:
    async with start_gateway() as gw, aiohttp.ClientSession(
            base_url=gw.url, headers={"Authorization": f"Bearer {ADMIN_KEY}"}) as admin:
        async with admin.post("/api/v1/api-keys", json={"name": "r", "scopes": ["read"]}) as r:
            created = await r.json()
        async with await browser(gw, created["key"]) as session:
            async with session.get("/ui/runs", allow_redirects=False) as r:
                assert r.status == 200
            async with admin.delete(f"/api/v1/api-keys/{created['id']}") as r:
                assert r.status == 204
            clock.advance(60)  # past the key cache
            async with session.get("/ui/runs", allow_redirects=False) as r:
                assert r.status == 302 and r.headers["Location"].startswith("/ui/login")


async def test_actions_need_the_csrf_token(gateway: RunningGateway, client: aiohttp.ClientSession,
                                           bus: Bus) -> None:
    await make_deployment(client)
    async with await browser(gateway, await make_key(client, "write")) as session:
        token = await csrf_of(session, "/ui/deployments/calc")
        for sent in ({}, {"csrf": "forged"}):
            async with session.post("/ui/deployments/calc/pause", data=sent,
                                    allow_redirects=False) as r:
                assert r.status == 403 and "CSRF" in await r.text()
        async with client.get("/api/v1/deployments/calc") as r:
            assert (await r.json())["paused"] is False
        async with session.post("/ui/deployments/calc/pause", data={"csrf": token},
                                allow_redirects=False) as r:
            assert r.status == 303 and r.headers["Location"] == "/ui/deployments/calc"
        async with client.get("/api/v1/deployments/calc") as r:
            assert (await r.json())["paused"] is True
        async with session.post("/ui/deployments/calc/resume", data={"csrf": token},
                                allow_redirects=False) as r:
            assert r.status == 303


async def test_a_read_only_key_sees_no_action_and_the_server_refuses_them(
    gateway: RunningGateway, client: aiohttp.ClientSession, bus: Bus,
) -> None:
    await make_deployment(client)
    async with await browser(gateway, await make_key(client, "read")) as session:
        async with session.get("/ui/deployments/calc") as r:
            page = await r.text()
        assert "run-form" not in page and "/pause" not in page and "read-only" in page
        token = await csrf_of(session, "/ui/deployments/calc")
        for action in ("run", "pause"):
            async with session.post(f"/ui/deployments/calc/{action}",
                                    data={"csrf": token, "p.n": "1"}, allow_redirects=False) as r:
                assert r.status == 403 and "read-only" in await r.text()
        async with session.post("/ui/runs/any/resume", data={"csrf": token, "p.n": "1"},
                                allow_redirects=False) as r:
            assert r.status == 403 and "read-only" in await r.text()
    assert await run_requests(bus) == []


async def test_the_run_form_checks_types_before_creating_a_run(
    gateway: RunningGateway, client: aiohttp.ClientSession, bus: Bus,
) -> None:
    await make_deployment(client)
    async with await browser(gateway, ADMIN_KEY) as session:
        token = await csrf_of(session, "/ui/deployments/calc")
        async with session.get("/ui/deployments/calc") as r:
            form = await r.text()
        assert all(f'name="p.{name}"' in form for name in SCHEMA["properties"])  # type: ignore[attr-defined]
        bad = {"csrf": token, "p.n": "three", "p.ratio": "x", "p.mode": "medium", "p.items": "{"}
        async with session.post("/ui/deployments/calc/run", data=bad, allow_redirects=False) as r:
            page = await r.text()
            assert r.status == 400
        for message in ("n must be a whole number", "ratio must be a number",
                        "mode must be one of fast, slow", "items must be JSON"):
            assert message in page, message
        async with session.post("/ui/deployments/calc/run", data={"csrf": token},
                                allow_redirects=False) as r:
            assert r.status == 400 and "n is required" in await r.text()
        assert await run_requests(bus) == []
        good = {"csrf": token, "p.n": "3", "p.ratio": "0.25", "p.mode": "slow",
                "p.items": "[1, 2]", "p.loud": "true"}
        async with session.post("/ui/deployments/calc/run", data=good, allow_redirects=False) as r:
            assert r.status == 303 and r.headers["Location"].startswith("/ui/runs/")
    [request] = await run_requests(bus)
    assert request["parameters"] == {"n": 3, "ratio": 0.25, "mode": "slow", "items": [1, 2],
                                     "loud": True}
    assert r.headers["Location"] == f"/ui/runs/{request['flow_run_id']}"


async def test_hostile_input_gets_a_clear_answer_never_a_5xx(
    gateway: RunningGateway, client: aiohttp.ClientSession,
) -> None:
    await make_deployment(client)
    async with await browser(gateway, ADMIN_KEY) as session:
        token = await csrf_of(session, "/ui/runs")
        gets = {
            "/ui/runs?state=Exploded": 400, "/ui/runs?since=yesterday": 400,
            "/ui/runs?q=" + "x" * 5000: 400, "/ui/runs?offset=-1": 400,
            "/ui/runs/%3E": 404, "/ui/runs/a.b.": 404, "/ui/runs/" + "z" * 3000: 404,
            "/ui/runs/nope/live": 404, "/ui/deployments/%3Cscript%3E": 404,
            "/ui/static/000000000000/ui.css": 404, "/ui/static/abc/ui.css": 404,
            "/ui/static/000000000000/..%2F..%2Fapp.py": 404,
            "/ui/events?pattern=a..b": 400, "/ui/events?pattern=" + "a" * 300: 400,
            "/ui/events?source=" + "s" * 2000: 400, "/ui/event": 404,
            "/ui/event?type=%3E&id=x": 404, "/ui/event?type=t.x&id=x&time=noon": 404,
            "/ui/event?type=t.x&id=x&time=2026-01-01T00:00:00": 404,
        }
        for path, status in gets.items():
            async with session.get(path, allow_redirects=False) as r:
                assert r.status == status, (path, r.status)
        async with session.get("/ui/runs?q=%3Cscript%3Ealert(1)%3C/script%3E") as r:
            page = await r.text()
            assert r.status == 200 and "<script>alert(1)" not in page and "&lt;script&gt;" in page
        posts = {
            "/ui/runs/nope/cancel": ({"csrf": token}, 404),
            "/ui/runs/nope/rerun": ({"csrf": token}, 404),
            "/ui/runs/nope/resume": ({"csrf": token, "p.approved": "true"}, 404),
            "/ui/runs/%3E%2A/resume": ({"csrf": token}, 404),
            "/ui/runs/nope2/resume": ({"csrf": token, "p.x": "y" * 200_000}, 413),
            "/ui/deployments/ghost/run": ({"csrf": token}, 404),
            "/ui/deployments/calc/run": ({"csrf": token, "p.n": "1" * 200_000}, 413),
        }
        for path, (data, status) in posts.items():
            async with session.post(path, data=data, allow_redirects=False) as r:
                assert r.status == status, (path, r.status)
        async with session.post("/ui/deployments/calc/run", data=b"\xff\xfe",
                                headers={"Content-Type": "application/octet-stream"},
                                allow_redirects=False) as r:
            assert r.status == 403
    async with aiohttp.ClientSession(base_url=gateway.url) as anonymous:
        async with anonymous.post("/ui/login", data={"api_key": "k" * 100_000},
                                  allow_redirects=False) as r:
            assert r.status in (401, 413)
        for target in ("//evil.example", "https://evil.example", "/\\evil.example"):
            async with anonymous.post("/ui/login", data={"api_key": ADMIN_KEY, "next": target},
                                      allow_redirects=False) as r:
                assert r.status == 303 and r.headers["Location"] == "/ui"


async def test_static_files_are_content_hashed_and_cached_for_long(
    gateway: RunningGateway,
) -> None:
    async with await browser(gateway, ADMIN_KEY) as session:
        async with session.get("/ui/runs") as r:
            page = await r.text()
        urls = re.findall(r'(?:href|src)="(/ui/static/[0-9a-f]{12}/[^"]+)"', page)
        assert any(u.endswith("/ui.css") for u in urls) and any("htmx.min.js" in u for u in urls)
        for url in urls:
            async with session.get(url) as r:
                assert r.status == 200
                assert r.headers["Cache-Control"] == "public, max-age=31536000, immutable"


async def test_automations_and_dead_letters_show_no_secret_and_redrive(
    gateway: RunningGateway, client: aiohttp.ClientSession, bus: Bus,
) -> None:
    from events.automation_store import REDRIVE_REQUESTED, DeadLetter, create_automation

    await create_automation(bus, {
        "name": "page-me", "trigger": {"expect": ["flowbus.flow-run.Failed"]},
        "actions": [{"type": "call-webhook", "url": "http://127.0.0.1:9/hook",
                     "headers": {"Authorization": "Bearer hook-secret-123"}}]})
    kv = await bus.kv(bus.layout.automation_state)
    letter = DeadLetter(key="k1", automation_id="a1", automation_name="page-me", action_index=0,
                        action={"type": "call-webhook", "headers": {"Authorization": "Bearer hook-secret-123"}},
                        reason="POST http://127.0.0.1:9/hook refused", attempts=5,
                        firing={"key": "f", "event": {}}, failed_at="2026-03-01T00:00:00Z")
    await kv.put("dead.k1", letter.model_dump_json().encode())
    async with await browser(gateway, await make_key(client, "read")) as reader:
        async with reader.get("/ui/automations") as r:
            page = await r.text()
        assert "page-me" in page and "flowbus.flow-run.Failed" in page and "call-webhook" in page
        assert "refused" in page and "hook-secret-123" not in page and "Redrive</button>" not in page
        token = await csrf_of(reader, "/ui/automations")
        async with reader.post("/ui/automations/dead-letters/k1/redrive", data={"csrf": token},
                               allow_redirects=False) as r:
            assert r.status == 403
    async with await browser(gateway, ADMIN_KEY) as admin:
        token = await csrf_of(admin, "/ui/automations")
        async with admin.post("/ui/automations/dead-letters/nope/redrive", data={"csrf": token},
                              allow_redirects=False) as r:
            assert r.status == 404
        async with admin.post("/ui/automations/dead-letters/k1/redrive", data={"csrf": token},
                              allow_redirects=False) as r:
            assert r.status == 303
    redrives = [e for e in await stored_events(bus) if e.type == REDRIVE_REQUESTED]
    assert [e.data["key"] for e in redrives] == ["k1"]
