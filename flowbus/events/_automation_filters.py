"""Prefect's ``AutomationFilter`` and its parts, for ``client.read_automations(automations=)``.

::

    from flowbus.events.filters import AutomationFilter, AutomationFilterName

    async with get_client() as client:
        found = await client.read_automations(
            automations=AutomationFilter(name=AutomationFilterName(any_=["nightly-retry"]))
        )

Every part given must hold, as in Prefect. The client applies the filter to the
automations the API lists (each a dict with ``name``, ``tags`` and ``created``).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class _AutomationPart(BaseModel):
    model_config = ConfigDict(extra="forbid")

    def includes(self, automation: Mapping[str, Any]) -> bool:
        raise NotImplementedError


class AutomationFilterCreated(_AutomationPart):
    """Automations created before ``before_``."""

    before_: datetime | None = Field(default=None, description="only those created before this time")

    def includes(self, automation: Mapping[str, Any]) -> bool:
        if self.before_ is None:
            return True
        created = automation.get("created")
        if created is None:
            return False
        when = created if isinstance(created, datetime) else datetime.fromisoformat(str(created))
        before = self.before_ if self.before_.tzinfo else self.before_.replace(tzinfo=UTC)
        return (when if when.tzinfo else when.replace(tzinfo=UTC)) < before


class AutomationFilterName(_AutomationPart):
    """Automations whose name is one of ``any_``."""

    any_: list[str] | None = Field(default=None, description="names; an automation matches any one")

    def includes(self, automation: Mapping[str, Any]) -> bool:
        return self.any_ is None or automation.get("name") in self.any_


class AutomationFilterTags(_AutomationPart):
    """Automations by their tags: all of ``all_``, any of ``any_``, or none at all (``is_null_``)."""

    all_: list[str] | None = Field(default=None, description="tags an automation must all have")
    any_: list[str] | None = Field(default=None, description="tags of which it must have one")
    is_null_: bool | None = Field(default=None, description="true: only untagged; false: only tagged")

    def includes(self, automation: Mapping[str, Any]) -> bool:
        tags = set(automation.get("tags") or ())
        if self.all_ is not None and not set(self.all_) <= tags:
            return False
        if self.any_ is not None and not tags & set(self.any_):
            return False
        return self.is_null_ is None or self.is_null_ == (not tags)


class AutomationFilter(_AutomationPart):
    """Automations that meet every part given."""

    name: AutomationFilterName | None = Field(default=None, description="by name")
    created: AutomationFilterCreated | None = Field(default=None, description="by creation time")
    tags: AutomationFilterTags | None = Field(default=None, description="by tags")

    def includes(self, automation: Mapping[str, Any]) -> bool:
        parts = (self.name, self.created, self.tags)
        return all(part.includes(automation) for part in parts if part is not None)
