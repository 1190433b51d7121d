"""Reading events through the client with Prefect's event filters, over the real API.

Events come from their real producers: outside events through the gateway's
CloudEvents ingest, flow-run events from the orchestrator (a run requested through
the API) and the gateway (a cancel).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest
from pydantic import ValidationError

from events.bus import Bus
from events.deployments import save_deployment
from events.records import Deployment
from flowbus.client import get_client
from flowbus.events.filters import (
    EventAnyResourceFilter,
    EventFilter,
    EventIDFilter,
    EventNameFilter,
    EventOccurredFilter,
    EventOrder,
    EventRelatedFilter,
    EventResourceFilter,
    EventTextFilter,
)
from gateway.service import RunningGateway, running
from gateway.settings import GatewaySettings
from tests.orchestrator.support import start

KEY = "deploy-tests-admin-key-0123456789abcdef"


@pytest.fixture
async def api(bus: Bus, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[RunningGateway]:
    async with running(bus, GatewaySettings(port=0, admin_api_key=KEY, wait_max_seconds=1)) as gw:
        monkeypatch.setenv("FLOWBUS_API_URL", gw.url + "/api/v1")
        monkeypatch.setenv("FLOWBUS_API_KEY", KEY)
        yield gw


async def ingest(gw: RunningGateway, *events: dict[str, Any]) -> None:
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {KEY}"}) as http:
        for event in events:
            body = {"specversion": "1.0", "source": "tests/shop", "datacontenttype": "application/json",
                    **event}
            async with http.post(gw.url + "/events", json=body,
                                 headers={"Content-Type": "application/cloudevents+json"}) as r:
                assert r.status == 202, await r.text()


def shipped(n: int, region: str, at: datetime) -> dict[str, Any]:
    """An order event laid out as flowbus.events.emit_event lays one out."""
    return {"id": f"o{n}", "type": "com.shop.order.shipped", "subject": f"order/{n}",
            "time": at.isoformat(), "data": {
                "carrier": "dhl" if n % 2 else "ups", "resource": {"region": region},
                "related": [{"flowbus.resource.id": f"customer/{n % 2}", "flowbus.resource.role": "customer"}]}}


@pytest.fixture
async def shop(api: RunningGateway) -> datetime:
    """Five order events a second apart (the last now), and one refund."""
    now = datetime.now(UTC)
    await ingest(api, *(shipped(n, "eu" if n < 3 else "us", now - timedelta(seconds=5 - n)) for n in range(5)))
    await ingest(api, {"id": "r1", "type": "com.shop.order.refunded", "subject": "order/1", "time": now.isoformat()})
    return now


async def test_read_events_newest_first_with_total_and_pages(shop: datetime) -> None:
    window = EventFilter(occurred=EventOccurredFilter(since=shop - timedelta(minutes=5)),
                         event=EventNameFilter(prefix=["com.shop.order."]))
    async with get_client() as client:
        page = await client.read_events(filter=window, limit=4)
        assert page.total == 6 and [e.id for e in page.events] == ["r1", "o4", "o3", "o2"]
        assert page.events[1].event == "com.shop.order.shipped" and page.events[1].resource_id == "order/4"
        assert page.events[1].resource["region"] == "us" and page.events[1].payload == {"carrier": "ups"}
        second = await page.get_next_page(client)
        assert second is not None and [e.id for e in second.events] == ["o1", "o0"]
        assert second.total == 6 and second.next_page is None
        assert await second.get_next_page(client) is None
        oldest = await client.read_events(filter=window.model_copy(update={"order": EventOrder.ASC}), limit=2)
        assert [e.id for e in oldest.events] == ["o0", "o1"]


async def test_each_filter_narrows(shop: datetime) -> None:
    since = EventOccurredFilter(since=shop - timedelta(minutes=5))

    async def ids(**parts: Any) -> list[str]:
        async with get_client() as client:
            page = await client.read_events(filter=EventFilter(**{"occurred": since, **parts}), limit=50)
            return sorted(e.id for e in page.events if e.event.startswith("com.shop."))

    assert await ids(event=EventNameFilter(name=["com.shop.order.refunded"])) == ["r1"]
    assert await ids(event=EventNameFilter(prefix=["com.shop."], exclude_name=["com.shop.order.refunded"])) \
        == ["o0", "o1", "o2", "o3", "o4"]
    assert await ids(resource=EventResourceFilter(id=["order/1"])) == ["o1", "r1"]
    assert await ids(resource=EventResourceFilter(labels={"region": ["us"]})) == ["o3", "o4"]
    # As in Prefect, a negated value needs the label present: r1 has no region.
    assert await ids(resource=EventResourceFilter(labels={"region": "!us"}, id_prefix=["order/"])) \
        == ["o0", "o1", "o2"]
    assert await ids(related=EventRelatedFilter(id=["customer/1"])) == ["o1", "o3"]
    assert await ids(related=EventRelatedFilter(resources_in_roles=[("customer/0", "customer")])) \
        == ["o0", "o2", "o4"]
    assert await ids(related=EventRelatedFilter(role=["supplier"])) == []
    assert await ids(any_resource=EventAnyResourceFilter(id=["customer/0", "order/1"])) \
        == ["o0", "o1", "o2", "o4", "r1"]
    assert await ids(id=EventIDFilter(id=["o2", "r1"])) == ["o2", "r1"]
    assert await ids(text=EventTextFilter(query="dhl -order/3")) == ["o1"]
    assert await ids(occurred=EventOccurredFilter(since=shop - timedelta(seconds=2.5), until=shop),
                     event=EventNameFilter(name=["com.shop.order.shipped"])) == ["o3", "o4"]
    assert await ids(resource=EventResourceFilter(distinct=True, id=["order/1"])) == ["r1"]


async def test_prefect_flow_run_names_read_flowbus_flow_run_events(api: RunningGateway, bus: Bus) -> None:
    running_orchestrator = await start(bus)
    try:
        await save_deployment(bus, Deployment(name="hello", flow_name="greet", tags=["nightly"]))
        async with get_client() as client:
            run_id = (await client.create_flow_run_from_deployment("hello"))["flow_run_id"]
            since = EventOccurredFilter(since=datetime.now(UTC) - timedelta(minutes=5))
            scheduled = EventFilter(occurred=since, event=EventNameFilter(name=["prefect.flow-run.Scheduled"]))
            for _ in range(100):
                page = await client.read_events(filter=scheduled)
                if page.total:
                    break
            [event] = page.events
            assert event.event == "flowbus.flow-run.Scheduled"
            assert event.resource_id == f"flowbus.flow-run.{run_id}"
            by_resource = EventFilter(occurred=since, resource=EventResourceFilter(
                id_prefix=["prefect.flow-run."]), related=[
                EventRelatedFilter(role=["deployment"]), EventRelatedFilter(id=["prefect.tag.nightly"])])
            assert [e.id for e in (await client.read_events(filter=by_resource)).events] == [event.id]
            other_tag = by_resource.model_copy(update={"related": EventRelatedFilter(id=["prefect.tag.x"])})
            assert (await client.read_events(filter=other_tag)).total == 0
    finally:
        await running_orchestrator.close()


async def test_sync_client_reads_and_pages(shop: datetime) -> None:
    window = {"occurred": {"since": (shop - timedelta(minutes=5)).isoformat()},
              "event": {"prefix": ["com.shop.order.shipped"]}}

    def use() -> tuple[list[str], list[str]]:
        with get_client(sync_client=True) as client:
            page = client.read_events(filter=window, limit=3)
            rest = page.get_next_page_sync(client)
            assert rest is not None
            return [e.id for e in page.events], [e.id for e in rest.events]

    assert await asyncio.to_thread(use) == (["o4", "o3", "o2"], ["o1", "o0"])


async def test_bad_filters_and_cursors_are_named(api: RunningGateway) -> None:
    async with get_client() as client:
        with pytest.raises(ValidationError, match="colour"):
            await client.read_events(filter={"event": {"colour": ["red"]}})
        with pytest.raises(TypeError, match="EventFilter"):
            await client.read_events(filter="com.shop.*")
        with pytest.raises(ValueError, match="limit"):
            await client.read_events(limit=0)
        with pytest.raises(ValueError, match="not a flowbus events cursor"):
            await client.read_events_page("http://example.invalid/events?page=2")
        with pytest.raises(ValueError, match="not a valid flowbus events cursor"):
            await client.read_events_page("flowbus-events:!!!")
        odd = EventFilter(event=EventNameFilter(prefix=["has space "]))
        assert (await client.read_events(filter=odd)).total == 0
