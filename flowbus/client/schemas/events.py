"""A page of events read through the client (Prefect's ``prefect.client.schemas.events``)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from flowbus.events.schemas.events import Event


class EventPage(BaseModel):
    """One page of the events a filter matched, in the filter's order.

    ``next_page`` is an opaque cursor (Prefect's is a URL): give the page to
    :meth:`get_next_page` to read the next one. The window of a paged read ends
    when its first page was read, so the pages neither repeat nor skip events that
    arrive meanwhile.
    """

    events: list[Event] = Field(description="the events of this page")
    total: int = Field(description="how many events the filter matched in all")
    next_page: str | None = Field(default=None, description="cursor of the next page; None on the last")

    async def get_next_page(self, client: Any) -> EventPage | None:
        """The next page (``client`` is an open async client), or None after the last."""
        if not self.next_page:
            return None
        page: EventPage = await client.read_events_page(self.next_page)
        return page

    def get_next_page_sync(self, client: Any) -> EventPage | None:
        """The next page through a sync client (``get_client(sync_client=True)``)."""
        if not self.next_page:
            return None
        page: EventPage = client.read_events_page(self.next_page)
        return page


__all__ = ["EventPage"]
