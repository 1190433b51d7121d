"""The automations page lists each automation's last firings, from what a real
orchestrator published, and its dead letters with redrive."""

from __future__ import annotations

import re

import aiohttp
from gateway_helpers import ADMIN_KEY
from test_ui_http import browser, csrf_of, make_key

from events.automation_store import DEAD_PREFIX, list_dead_letters
from events.bus import Bus
from events.cloudevent import CloudEvent
from gateway.service import RunningGateway
from tests.automations.support import start, wait_events, wait_until


def cell_of(page: str, automation_id: str) -> str:
    found = re.search(rf'<td class="firings" data-automation="{automation_id}">(.*?)</td>',
                      page, re.S)
    assert found, automation_id
    return found.group(1)


async def test_the_automations_page_shows_last_firings_with_their_outcomes_and_redrives(
    gateway: RunningGateway, client: aiohttp.ClientSession, bus: Bus,
) -> None:
    running = await start(bus)
    try:
        made = {}
        for name, action in (("fine", {"type": "do-nothing"}),
                             ("broken", {"type": "send-notification", "channel": "nowhere",
                                         "body": "x"}),
                             ("quiet", {"type": "do-nothing"})):
            expect = "shop.order.never" if name == "quiet" else "shop.order.created"
            async with client.post("/api/v1/automations", json={
                    "name": name, "trigger": {"expect": [expect]}, "actions": [action]}) as r:
                assert r.status == 201, await r.text()
                made[name] = (await r.json())["id"]

        async def known() -> bool:
            return set(made.values()) <= set(running.orch.automations.catalog.automations)

        await wait_until(known, 30)
        first = CloudEvent.create("shop.order.created", source="/shop")
        await bus.publish(first)
        await wait_events(bus, "flowbus.automation.action.executed", 1, within=30)
        await wait_events(bus, "flowbus.automation.action.failed", 1, within=30)
        second = CloudEvent.create("shop.order.created", source="/shop")
        await bus.publish(second)
        await wait_events(bus, "flowbus.automation.action.failed", 2, within=30)

        async with await browser(gateway, await make_key(client, "read")) as reader:
            async with reader.get("/ui/automations") as r:
                page = await r.text()
            assert r.status == 200
        fine, broken = cell_of(page, made["fine"]), cell_of(page, made["broken"])
        assert fine.count("state-completed") == 2 and "state-failed" not in fine
        assert "1 action(s) done" in fine
        # Newest first: the second event's firing, then the first's.
        assert fine.index(second.id) < fine.index(first.id)
        assert broken.count("state-failed") == 2 and "channel &#39;nowhere&#39; not found" in broken
        assert "none in the last 24 hours" in cell_of(page, made["quiet"])
        assert "Redrive</button>" not in page  # a read-only key

        letters = await list_dead_letters(bus)
        assert len(letters) == 2
        async with await browser(gateway, ADMIN_KEY) as admin:
            token = await csrf_of(admin, "/ui/automations")
            state = await bus.kv(bus.layout.automation_state)
            before = await state.get(DEAD_PREFIX + letters[0].key)
            assert before is not None
            async with admin.get("/ui/automations") as r:
                assert (await r.text()).count("Redrive</button>") == 2
            async with admin.post(f"/ui/automations/dead-letters/{letters[0].key}/redrive",
                                  data={"csrf": token}, allow_redirects=False) as r:
                assert r.status == 303
            # The orchestrator runs the action again, which fails again: a new dead letter.
            # (Its failure event has the id of the first one, so the stream's duplicate
            # window drops it: the page still shows the failure once per firing.)

            async def failed_again() -> bool:
                entry = await state.get(DEAD_PREFIX + letters[0].key)
                return entry is not None and entry.revision > before.revision

            await wait_until(failed_again, 30)
            async with admin.get("/ui/automations") as r:
                page = await r.text()
            assert page.count("Redrive</button>") == 2
            assert cell_of(page, made["broken"]).count("state-failed") == 2
    finally:
        await running.close()
