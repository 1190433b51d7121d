"""The sources-and-webhooks and runners-and-limits pages over plain HTTP."""

from __future__ import annotations

import hashlib
import hmac
import re

import aiohttp
from gateway_helpers import ADMIN_KEY, stored_events
from test_ui_http import browser, csrf_of, make_key

from events.bus import Bus
from gateway.service import RunningGateway


async def test_creating_a_webhook_shows_its_url_and_secret_once_and_the_secret_works(
    gateway: RunningGateway, client: aiohttp.ClientSession, bus: Bus,
) -> None:
    async with await browser(gateway, ADMIN_KEY) as admin:
        token = await csrf_of(admin, "/ui/sources")
        form = {"csrf": token, "slug": "deploys", "verifier": "hmac",
                "signature_header": "X-Sig", "description": "from the CI"}
        async with admin.post("/ui/webhooks", data=form, allow_redirects=False) as r:
            page = await r.text()
            assert r.status == 201 and r.headers["Cache-Control"] == "no-store"
        assert "/hooks/deploys" in page
        found = re.search(r'<pre class="code" id="webhook-secret">([^<]+)</pre>', page)
        assert found
        secret = found.group(1)
        async with admin.get("/ui/sources") as r:
            listing = await r.text()
        assert "/hooks/deploys" in listing and "from the CI" in listing and secret not in listing
    body = b'{"ok": true}'
    signature = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    async with client.post("/hooks/deploys", data=body, headers={
            "X-Sig": signature, "Content-Type": "application/json"}) as r:
        assert r.status == 202, await r.text()
    async with client.post("/hooks/deploys", data=body, headers={
            "X-Sig": "0" * 64, "Content-Type": "application/json"}) as r:
        assert r.status == 401
    assert [e.type for e in await stored_events(bus)] == ["webhook.deploys"]


async def test_webhook_forms_refuse_bad_input_and_non_admins_and_delete_works(
    gateway: RunningGateway, client: aiohttp.ClientSession,
) -> None:
    async with client.post("/api/v1/webhooks", json={"slug": "taken", "verifier": "github"}) as r:
        assert r.status == 201
    for scope in ("read", "write"):
        async with await browser(gateway, await make_key(client, scope)) as session:
            async with session.get("/ui/sources") as r:
                page = await r.text()
            assert r.status == 200 and "/hooks/taken" in page
            assert "webhook-form" not in page and "Delete</button>" not in page
            token = await csrf_of(session, "/ui/sources")
            for path in ("/ui/webhooks", "/ui/webhooks/taken/delete"):
                async with session.post(path, data={"csrf": token, "slug": "mine",
                                                    "verifier": "none"}, allow_redirects=False) as r:
                    assert r.status == 403 and "admin" in await r.text(), (scope, path)
    async with await browser(gateway, ADMIN_KEY) as admin:
        token = await csrf_of(admin, "/ui/sources")
        cases = {
            "bad slug": ({"slug": "Bad Slug!", "verifier": "none"}, 400, "slug"),
            "no verifier": ({"slug": "ok-slug"}, 400, "verifier"),
            "unknown verifier": ({"slug": "ok-slug", "verifier": "rot13"}, 400, "verifier"),
            "taken": ({"slug": "taken", "verifier": "none"}, 409, "already exists"),
            "markup": ({"slug": "<script>x</script>", "verifier": "none"}, 400, "&lt;script&gt;"),
            "oversized": ({"slug": "s" * 5000, "verifier": "none"}, 413, "longer than"),
        }
        for what, (fields, status, text) in cases.items():
            async with admin.post("/ui/webhooks", data={"csrf": token, **fields},
                                  allow_redirects=False) as r:
                page = await r.text()
                assert r.status == status and text in page, (what, r.status)
                assert "<script>x" not in page
        async with admin.post("/ui/webhooks", data={"slug": "x", "verifier": "none"},
                              allow_redirects=False) as r:
            assert r.status == 403
        async with admin.post("/ui/webhooks", data=b"\xff\xfe",
                              headers={"Content-Type": "application/octet-stream"},
                              allow_redirects=False) as r:
            assert r.status == 403
        for slug, status in (("ghost", 404), ("%3E", 404), ("a" * 3000, 404)):
            async with admin.post(f"/ui/webhooks/{slug}/delete", data={"csrf": token},
                                  allow_redirects=False) as r:
                assert r.status == status, slug
        async with admin.post("/ui/webhooks/taken/delete", data={"csrf": token},
                              allow_redirects=False) as r:
            assert r.status == 303 and r.headers["Location"] == "/ui/sources?deleted=taken"
    async with client.get("/api/v1/webhooks") as r:
        assert [h["slug"] for h in (await r.json())["items"]] == []


async def test_sources_show_their_status_and_limits_their_slots(
    gateway: RunningGateway, client: aiohttp.ClientSession,
) -> None:
    source = {"name": "plant", "kind": "nats", "description": "the plant's sensors",
              "connection": {"url": "nats://127.0.0.1:9"},
              "subscription": {"subject": "sensors.>"},
              "mapping": {"type": "plant.reading", "data": "{{ body }}"}}
    async with client.post("/api/v1/sources", json=source) as r:
        assert r.status == 201, await r.text()
    async with client.post("/api/v1/concurrency-limits", json={"name": "db", "limit": 3}) as r:
        assert r.status == 201
    async with await browser(gateway, await make_key(client, "read")) as reader:
        async with reader.get("/ui/sources") as r:
            page = await r.text()
        assert r.status == 200 and "plant" in page and "the plant&#39;s sensors" in page
        async with reader.get("/ui/runners") as r:
            page = await r.text()
        assert r.status == 200 and "No runner is serving right now" in page
        limits = page.split('id="limits"', 1)[1]
        assert '<td class="mono">db</td>' in limits and "<td>3</td>" in limits


async def test_the_dashboard_window_is_checked(gateway: RunningGateway) -> None:
    async with await browser(gateway, ADMIN_KEY) as session:
        for window in ("1h", "24h", "7d", "all"):
            async with session.get(f"/ui?window={window}") as r:
                assert r.status == 200, window
        for window in ("bogus", "%3Cscript%3E", "1" * 5000):
            async with session.get(f"/ui?window={window}") as r:
                page = await r.text()
                assert r.status == 400 and "window" in page and "<script>" not in page


async def test_the_task_runs_and_assets_pages_check_their_filters(
    gateway: RunningGateway, client: aiohttp.ClientSession,
) -> None:
    async with await browser(gateway, await make_key(client, "read")) as session:
        gets = {
            "/ui/task-runs": 200, "/ui/assets": 200,
            "/ui/task-runs?state=Exploded": 400, "/ui/task-runs?task=" + "t" * 5000: 400,
            "/ui/task-runs?offset=-1": 400, "/ui/task-runs?offset=zz": 400,
            "/ui/task-runs?task=%3Cscript%3E": 200,
            "/ui/assets?prefix=%00": 400, "/ui/assets?prefix=" + "p" * 5000: 400,
            "/ui/assets?offset=99999999999": 400, "/ui/assets?prefix=%3Cscript%3E": 200,
        }
        for path, status in gets.items():
            async with session.get(path, allow_redirects=False) as r:
                text = await r.text()
                assert r.status == status, (path, r.status)
                assert "<script>" not in text.split("</head>", 1)[1]
        async with session.get("/ui/task-runs?state=Exploded") as r:
            assert "filter state" in await r.text()
    async with aiohttp.ClientSession(base_url=gateway.url) as anonymous:
        for path in ("/ui/task-runs", "/ui/assets"):
            async with anonymous.get(path, allow_redirects=False) as r:
                assert r.status == 302 and r.headers["Location"].startswith("/ui/login")
