"""Artifacts: rich outputs of a run (markdown, tables, links, progress, images).

Kept with the run: with a server (a run on a runner, or ``FLOWBUS_NATS_URL`` set) in
the ``flowbus-artifacts`` KV bucket that ``/api/v1/artifacts`` reads, with no server as
JSON files under ``$FLOWBUS_HOME/artifacts``; either way a ``flowbus.artifact.created``
/ ``.updated`` event goes to the event sink.

Example::

    from flowbus.artifacts import Artifact, create_markdown_artifact

    create_markdown_artifact("# Report\\nAll good", key="daily-report")
    Artifact.get("daily-report").data   # "# Report\\nAll good"
"""

from __future__ import annotations

import asyncio
import builtins
import datetime as _dt
import json
import re
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from typing import Any, TypeVar

from flowbus import _sink, _state
from flowbus._dual import dual, dual_classmethod
from flowbus.context import _flow_run_ctx, _task_run_ctx

_KEY = re.compile(r"^[a-z0-9-]{1,200}$")


@dataclass(slots=True)
class Artifact:
    """One stored artifact."""

    id: str
    key: str | None
    type: str
    data: Any
    description: str | None
    flow_run_id: str | None
    task_run_id: str | None
    created: str
    updated: str

    @classmethod
    async def aget(cls, key: str) -> Artifact | None:
        """`get` for async code."""
        return await asyncio.to_thread(cls.get, key, _sync=True)

    @dual_classmethod("aget")
    def get(cls: builtins.type[Artifact], key: str) -> Artifact | None:
        """The latest artifact with `key`, or None (from any process that shares the state;
        awaitable in async code)."""
        if not isinstance(key, str) or not _KEY.match(key):
            return None
        pointer = _state.bucket("artifacts").get(f"key.{key}")
        return None if pointer is None else _load(pointer.decode())

    @classmethod
    def get_by_id(cls, artifact_id: str | uuid.UUID) -> Artifact | None:
        """The artifact with this id, or None."""
        return _load(str(artifact_id))


def _load(artifact_id: str) -> Artifact | None:
    try:
        uuid.UUID(artifact_id)
    except ValueError:
        return None
    raw = _state.bucket("artifacts").get(f"id.{artifact_id}")
    return None if raw is None else Artifact(**json.loads(raw))


def _save(artifact: Artifact, event: str) -> None:
    from events.artifacts import MAX_ARTIFACT_BYTES, ArtifactRecord

    data = ArtifactRecord.model_validate(asdict(artifact)).model_dump_json().encode()
    if len(data) > MAX_ARTIFACT_BYTES:
        raise ValueError(f"Artifact is {len(data)} bytes encoded, over {MAX_ARTIFACT_BYTES}")
    bucket = _state.bucket("artifacts")
    bucket.put(f"id.{artifact.id}", data)
    if artifact.key:
        bucket.put(f"key.{artifact.key}", artifact.id.encode())
    _sink.emit_event(f"flowbus.artifact.{event}", f"flowbus.artifact.{artifact.id}", asdict(artifact))


def _create(type: str, data: Any, key: str | None, description: str | None) -> uuid.UUID:
    if key is not None and not _KEY.match(key):
        raise ValueError(
            f"Artifact key {key!r} is invalid: use lowercase letters, digits and dashes"
        )
    task_ctx = _task_run_ctx.get()
    flow_ctx = _flow_run_ctx.get()
    now = _dt.datetime.now(_dt.UTC).isoformat()
    artifact_id = uuid.uuid4()
    _save(
        Artifact(
            id=str(artifact_id),
            key=key,
            type=type,
            data=data,
            description=description,
            flow_run_id=flow_ctx.flow_run.id if flow_ctx else (task_ctx.task_run.flow_run_id if task_ctx else None),
            task_run_id=task_ctx.task_run.id if task_ctx else None,
            created=now,
            updated=now,
        ),
        "created",
    )
    return artifact_id


def create_markdown_artifact(markdown: str, key: str | None = None, description: str | None = None) -> uuid.UUID:
    """Store a markdown document; returns the artifact id."""
    return _create("markdown", markdown, key, description)


def create_table_artifact(
    table: dict[str, list[Any]] | list[dict[str, Any]] | list[list[Any]],
    key: str | None = None,
    description: str | None = None,
) -> uuid.UUID:
    """Store a table: a list of rows (dicts or lists) or a dict of columns."""
    if not isinstance(table, dict | list):
        raise TypeError(f"A table artifact needs a list of rows or a dict of columns, got {type(table).__name__}")
    json.dumps(table)  # fail now, with the caller's stack, if it cannot be stored
    return _create("table", table, key, description)


def create_link_artifact(
    link: str, link_text: str | None = None, key: str | None = None, description: str | None = None
) -> uuid.UUID:
    """Store a link (rendered as markdown ``[link_text](link)``)."""
    return _create("markdown", f"[{link_text}]({link})" if link_text else link, key, description)


def create_image_artifact(image_url: str, key: str | None = None, description: str | None = None) -> uuid.UUID:
    """Store an image by URL."""
    return _create("image", image_url, key, description)


def create_progress_artifact(progress: float, key: str | None = None, description: str | None = None) -> uuid.UUID:
    """Store a progress figure (0 to 100); update it with `update_progress_artifact`."""
    _check_progress(progress)
    return _create("progress", float(progress), key, description)


def update_progress_artifact(artifact_id: str | uuid.UUID, progress: float, description: str | None = None) -> uuid.UUID:
    """Set a progress artifact's figure."""
    _check_progress(progress)
    artifact = _load(str(artifact_id))
    if artifact is None or artifact.type != "progress":
        raise ValueError(f"No progress artifact with id {artifact_id}")
    artifact.data = float(progress)
    if description is not None:
        artifact.description = description
    artifact.updated = _dt.datetime.now(_dt.UTC).isoformat()
    _save(artifact, "updated")
    return uuid.UUID(artifact.id)


def _check_progress(progress: float) -> None:
    if not 0 <= progress <= 100:
        raise ValueError(f"Progress must be between 0 and 100, got {progress}")


# As in Prefect, each helper is called plainly in sync code and awaited in async code
# (an async flow or task, or any coroutine); the `a...` names are always awaitable.
F = TypeVar("F", bound=Callable[..., Any])


def _with_async_twin(fn: F) -> tuple[Callable[..., Awaitable[Any]], F]:
    async def twin(*args: Any, **kwargs: Any) -> Any:
        return await asyncio.to_thread(fn, *args, **kwargs)

    twin.__name__ = twin.__qualname__ = f"a{fn.__name__}"
    twin.__doc__ = f"`{fn.__name__}` for async code."
    return twin, dual(twin)(fn)


acreate_markdown_artifact, create_markdown_artifact = _with_async_twin(create_markdown_artifact)
acreate_table_artifact, create_table_artifact = _with_async_twin(create_table_artifact)
acreate_link_artifact, create_link_artifact = _with_async_twin(create_link_artifact)
acreate_image_artifact, create_image_artifact = _with_async_twin(create_image_artifact)
acreate_progress_artifact, create_progress_artifact = _with_async_twin(create_progress_artifact)
aupdate_progress_artifact, update_progress_artifact = _with_async_twin(update_progress_artifact)

__all__ = [
    "Artifact",
    "acreate_image_artifact",
    "acreate_link_artifact",
    "acreate_markdown_artifact",
    "acreate_progress_artifact",
    "acreate_table_artifact",
    "aupdate_progress_artifact",
    "create_image_artifact",
    "create_link_artifact",
    "create_markdown_artifact",
    "create_progress_artifact",
    "create_table_artifact",
    "update_progress_artifact",
]
