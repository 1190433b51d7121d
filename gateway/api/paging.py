"""Paginated lists: ``?limit=&offset=`` in, ``{"items", "total", "next_offset"}`` out."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field

T = TypeVar("T")


class PageQuery(BaseModel):
    """How much of a list to return."""

    model_config = ConfigDict(extra="forbid")

    limit: int = Field(default=100, ge=1, le=1000, description="items per page")
    offset: int = Field(default=0, ge=0, le=10_000_000, description="items to skip")


class Page(BaseModel, Generic[T]):
    """One page of a list."""

    items: list[T] = Field(description="the items of this page")
    total: int = Field(description="items in the whole (filtered) list")
    limit: int = Field(description="the page size asked for")
    offset: int = Field(description="where this page starts")
    next_offset: int | None = Field(description="offset of the next page; null on the last")


def page_of(items: Sequence[T], query: PageQuery) -> Page[T]:
    """The page of ``items`` that ``query`` asks for."""
    chunk = list(items[query.offset : query.offset + query.limit])
    end = query.offset + len(chunk)
    return Page[T](
        items=chunk, total=len(items), limit=query.limit, offset=query.offset,
        next_offset=end if end < len(items) else None,
    )
