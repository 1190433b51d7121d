"""A client of the gateway's REST API, async and sync, as Prefect's ``get_client()``.

::

    from flowbus.client import get_client

    async with get_client() as client:
        runs = await client.read_flow_runs(deployment="etl", state="Failed")

    with get_client(sync_client=True) as client:
        client.pause_deployment("etl")

The API's address is ``FLOWBUS_API_URL`` (default ``http://127.0.0.1:8080/api/v1``)
and ``FLOWBUS_API_KEY`` is sent as a Bearer token. Deployments and flow runs come
back as :class:`events.records.Deployment` / :class:`events.records.FlowRun`;
automations, variables and log records as the JSON objects the API returns.
Every error is an :class:`ApiError` carrying the HTTP status and the API's detail.
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator
from datetime import datetime
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, TypeVar, overload
from urllib.parse import quote

import aiohttp
from pydantic import BaseModel

from events.errors import FlowbusError
from events.records import Deployment, FlowRun
from flowbus.project import DeploySettings

if TYPE_CHECKING:
    from flowbus.client.schemas.events import EventPage

M = TypeVar("M", bound=BaseModel)
PAGE = 1000
RESPONSE_MAX_BYTES = 64 * 1024 * 1024


class ApiError(FlowbusError):
    """The API answered with an error (``status``), or could not be reached (status 0)."""

    def __init__(self, status: int, detail: str) -> None:
        self.status = status
        self.detail = detail
        super().__init__(f"API error {status}: {detail}" if status else detail)


class ApiNotFound(ApiError, LookupError):
    """The API has no such deployment, flow run, variable or automation (404)."""


def _segment(value: str) -> str:
    return quote(value, safe="")


def _model(model: type[M], value: Any) -> M:
    """``value`` as ``model``; an ApiError (not a pydantic error) when the API sent another shape."""
    from pydantic import ValidationError

    try:
        return model.model_validate(value)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(p) for p in first.get("loc", ())) or "body"
        raise ApiError(200, f"the API answered with an unexpected {model.__name__} "
                            f"({where}: {first['msg']}); are client and gateway the same version?") from None


class FlowbusClient:
    """Async client of the REST API. Use as ``async with``; one HTTP session per client."""

    def __init__(self, api_url: str | None = None, api_key: str | None = None, *,
                 timeout: float | None = None) -> None:
        settings = DeploySettings()
        self.api_url = (api_url or settings.api_url).rstrip("/")
        key = api_key if api_key is not None else settings.api_key
        self._headers = {"Authorization": f"Bearer {key}"} if key else {}
        self._timeout = timeout if timeout is not None else settings.api_timeout_seconds
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> FlowbusClient:
        self._session = aiohttp.ClientSession(headers=self._headers)
        return self

    async def __aexit__(self, et: type[BaseException] | None, e: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    # --- transport ---------------------------------------------------------------------

    async def request(self, method: str, path: str, *, json_body: Any = None,
                      params: dict[str, Any] | None = None, extra_wait: float = 0.0) -> Any:
        """One API call; the decoded JSON answer (None for 204)."""
        if self._session is None:
            raise ApiError(0, "the client is not open; use it as `async with get_client() as client`")
        query = {k: _query_value(v) for k, v in (params or {}).items() if v is not None}
        try:
            async with self._session.request(
                method, self.api_url + path, json=json_body, params=query,
                timeout=aiohttp.ClientTimeout(total=self._timeout + extra_wait),
            ) as response:
                body = await _read_bounded(response)
                if body is None:
                    raise ApiError(response.status, f"the answer to {method} {path} is over "
                                                    f"{RESPONSE_MAX_BYTES} bytes; refusing it")
                if response.status >= 400:
                    raise _error(response.status, body)
                if response.status == 204 or not body:
                    return None
                try:
                    return json.loads(body)
                except ValueError:
                    raise ApiError(response.status, f"the answer to {method} {path} is not JSON; "
                                                    f"is {self.api_url} the flowbus API?") from None
        except aiohttp.ClientError as exc:
            raise ApiError(0, f"cannot reach the flowbus API at {self.api_url} "
                              f"(FLOWBUS_API_URL): {exc}") from None
        except TimeoutError:
            raise ApiError(0, f"the flowbus API at {self.api_url} did not answer "
                              f"{method} {path} within {self._timeout + extra_wait:.0f}s") from None

    async def _pages(self, path: str, params: dict[str, Any] | None = None,
                     limit: int | None = None) -> list[Any]:
        items: list[Any] = []
        offset: int | None = 0
        while offset is not None and (limit is None or len(items) < limit):
            size = PAGE if limit is None else min(PAGE, limit - len(items))
            page = await self.request("GET", path, params={**(params or {}), "limit": size,
                                                           "offset": offset})
            items.extend(page["items"])
            offset = page.get("next_offset")
        return items

    # --- deployments --------------------------------------------------------------------

    async def read_deployments(self, *, limit: int | None = None, deployment_filter: Any = None,
                               offset: int = 0) -> list[Deployment]:
        """Deployments; ``deployment_filter`` is Prefect's ``DeploymentFilter`` (or a dict)."""
        if deployment_filter is None and not offset:
            return [_model(Deployment, d) for d in await self._pages("/deployments", limit=limit)]
        from flowbus.client import _filtering as f
        from flowbus.client.schemas.filters import DeploymentFilter

        dep_f = f.check_filter(deployment_filter, DeploymentFilter, "deployment_filter")
        found = [_model(Deployment, d) for d in await self._pages("/deployments", limit=None)]
        return f.select(found, [dep_f.matches] if dep_f is not None else [], offset, limit)

    async def read_deployment(self, name: str) -> Deployment:
        return _model(Deployment, await self.request("GET", f"/deployments/{_segment(name)}"))

    read_deployment_by_name = read_deployment

    async def create_deployment(self, deployment: Deployment) -> Deployment:
        body = deployment.model_dump(mode="json", exclude={"id", "created", "updated"})
        return _model(Deployment, await self.request("POST", "/deployments", json_body=body))

    async def update_deployment(self, name: str, **changes: Any) -> Deployment:
        return _model(Deployment,
            await self.request("PATCH", f"/deployments/{_segment(name)}", json_body=changes))

    async def delete_deployment(self, name: str) -> None:
        await self.request("DELETE", f"/deployments/{_segment(name)}")

    async def pause_deployment(self, name: str) -> Deployment:
        return _model(Deployment,
            await self.request("POST", f"/deployments/{_segment(name)}/pause"))

    async def resume_deployment(self, name: str) -> Deployment:
        return _model(Deployment,
            await self.request("POST", f"/deployments/{_segment(name)}/resume"))

    async def create_flow_run_from_deployment(
        self, name: str, parameters: dict[str, Any] | None = None, *,
        tags: list[str] | None = None, idempotency_key: str | None = None,
        flow_run_name: str | None = None, scheduled_start_time: datetime | None = None,
        wait: float | None = None,
    ) -> dict[str, Any]:
        """Ask for a run; the API's answer (``flow_run_id``; with ``wait``, state and result)."""
        body: dict[str, Any] = {"parameters": parameters or {}, "tags": tags or []}
        if idempotency_key is not None:
            body["idempotency_key"] = idempotency_key
        if flow_run_name is not None:
            body["name"] = flow_run_name
        if scheduled_start_time is not None:
            body["scheduled_start_time"] = scheduled_start_time.isoformat()
        answer: dict[str, Any] = await self.request(
            "POST", f"/deployments/{_segment(name)}/runs", json_body=body,
            params={"wait": wait} if wait else None, extra_wait=wait or 0.0,
        )
        return answer

    # --- flow runs ----------------------------------------------------------------------

    async def read_flow_runs(
        self, *, deployment: str | None = None, state: str | None = None, limit: int | None = 100,
        flow_filter: Any = None, flow_run_filter: Any = None, deployment_filter: Any = None,
        work_pool_filter: Any = None, sort: Any = None, offset: int = 0,
    ) -> list[FlowRun]:
        """Flow runs, newest first (or in ``sort``'s order).

        Prefect's filters (``flowbus.client.schemas.filters``) are applied here, to every
        run the API lists: fine for thousands of runs, not for millions.
        """
        from flowbus.client import _filtering as f
        from flowbus.client.schemas import filters as s

        run_f = f.check_filter(flow_run_filter, s.FlowRunFilter, "flow_run_filter")
        flow_f = f.check_filter(flow_filter, s.FlowFilter, "flow_filter")
        dep_f = f.check_filter(deployment_filter, s.DeploymentFilter, "deployment_filter")
        pool_f = f.check_filter(work_pool_filter, s.WorkPoolFilter, "work_pool_filter")
        if run_f is None and flow_f is None and dep_f is None and pool_f is None and sort is None and not offset:
            items = await self._pages("/flow-runs", {"deployment": deployment, "state": state}, limit)
            return [_model(FlowRun, r) for r in items]
        runs = [_model(FlowRun, r) for r in
                await self._pages("/flow-runs", {"deployment": deployment, "state": state}, None)]
        predicates = [p.matches for p in (run_f, flow_f, pool_f) if p is not None]
        if dep_f is not None:
            chosen = [d for d in await self.read_deployments() if dep_f.matches(d)]
            ids, names = {d.id for d in chosen}, {d.name for d in chosen}
            predicates.append(lambda r: r.deployment_id in ids or r.deployment_name in names)
        return f.select(f.sort_flow_runs(runs, sort), predicates, offset, limit)

    async def set_flow_run_state(self, flow_run_id: str, state: Any, force: bool = False) -> FlowRun:
        """Move a run to ``state``. The API changes a run's state only by cancelling it:
        a CANCELLED (or CANCELLING) state cancels the run; any other is refused
        (``ApiError`` 422) rather than ignored. ``force`` is accepted for Prefect's
        signature; the API's transition rules still apply."""
        kind = str(getattr(getattr(state, "type", None), "value", getattr(state, "type", "")))
        if kind not in ("CANCELLED", "CANCELLING"):
            raise ApiError(422, f"set_flow_run_state: flowbus's API only cancels runs; a {kind or state!r} "
                                "state cannot be set from a client")
        return await self.cancel_flow_run(flow_run_id)

    async def read_artifacts(self, *, artifact_filter: Any = None, flow_run_filter: Any = None,
                             sort: Any = None, limit: int | None = None, offset: int = 0) -> list[dict[str, Any]]:
        """Artifacts as the API lists them (JSON objects), filtered by ``artifact_filter``
        (``flowbus.client.schemas.filters.ArtifactFilter``) and by their run's ``flow_run_filter``."""
        from flowbus.client import _filtering as f
        from flowbus.client.schemas import filters as s

        art_f = f.check_filter(artifact_filter, s.ArtifactFilter, "artifact_filter")
        run_f = f.check_filter(flow_run_filter, s.FlowRunFilter, "flow_run_filter")
        items: list[dict[str, Any]] = await self._pages("/artifacts", None, None)
        predicates = [art_f.matches] if art_f is not None else []
        if run_f is not None:
            chosen = {r.id for r in await self.read_flow_runs(flow_run_filter=run_f, limit=None)}
            predicates.append(lambda a: a.get("flow_run_id") in chosen)
        if sort is not None:
            name = str(getattr(sort, "value", sort))
            field, _, direction = name.rpartition("_")
            field = {"CREATED": "created", "UPDATED": "updated", "ID": "id", "KEY": "key"}.get(field, "")
            if not field:
                raise ValueError(f"sort {sort!r} is not one of CREATED_DESC, UPDATED_DESC, ID_DESC, KEY_DESC, KEY_ASC")
            items = sorted(items, key=lambda a: str(a.get(field) or ""), reverse=direction == "DESC")
        return f.select(items, predicates, offset, limit)

    async def read_flow_run(self, flow_run_id: str) -> FlowRun:
        return _model(FlowRun, await self.request("GET", f"/flow-runs/{_segment(flow_run_id)}"))

    async def cancel_flow_run(self, flow_run_id: str) -> FlowRun:
        return _model(FlowRun,
            await self.request("POST", f"/flow-runs/{_segment(flow_run_id)}/cancel"))

    async def delete_flow_run(self, flow_run_id: str) -> None:
        """Delete a run's record (``ApiNotFound`` when there is none). A run that is not
        final is refused (``ApiError`` 409): cancel it first."""
        await self.request("DELETE", f"/flow-runs/{_segment(str(flow_run_id))}")

    # --- events -------------------------------------------------------------------------

    async def read_events(self, filter: Any = None, limit: int = 100) -> EventPage:
        """The first page (``limit`` events) of those ``filter`` matches, newest first by
        default: a :class:`flowbus.client.schemas.events.EventPage`. ``filter`` is a
        :class:`flowbus.events.filters.EventFilter` (or a dict of its fields)."""
        from flowbus.client import _events

        return await _events.read_events(self.request, filter, limit)

    async def read_events_page(self, next_page: Any) -> EventPage:
        """The page an ``EventPage.next_page`` cursor points to."""
        from flowbus.client import _events

        return await _events.read_events_page(self.request, next_page)

    async def read_logs(self, flow_run_id: str, *, limit: int = 1000) -> list[dict[str, Any]]:
        """A run's log records, oldest first."""
        answer = await self.request("GET", f"/flow-runs/{_segment(flow_run_id)}/logs",
                                    params={"limit": limit})
        return list(answer["items"])

    async def follow_logs(self, flow_run_id: str) -> AsyncGenerator[dict[str, Any], None]:
        """A run's log records as they arrive, until the run is final."""
        if self._session is None:
            raise ApiError(0, "the client is not open; use it as `async with get_client() as client`")
        path = f"/flow-runs/{_segment(flow_run_id)}/logs"
        try:
            async with self._session.get(self.api_url + path, params={"follow": "true"},
                                         timeout=aiohttp.ClientTimeout(total=None)) as response:
                if response.status >= 400:
                    raise _error(response.status, await response.read())
                async for line in response.content:
                    if not line.strip():
                        continue
                    record = json.loads(line)
                    if isinstance(record, dict):
                        yield record
        except aiohttp.ClientError as exc:
            raise ApiError(0, f"lost the log stream of {flow_run_id}: {exc}") from None
        except ValueError as exc:  # a line too long, or not JSON
            raise ApiError(200, f"the log stream of {flow_run_id} is malformed: {exc}") from None

    # --- automations --------------------------------------------------------------------

    async def read_automations(self, *, automations: Any = None, limit: int | None = None,
                               offset: int = 0) -> list[dict[str, Any]]:  # fmt: skip
        """The automations, or those an ``AutomationFilter`` (flowbus.events.filters) admits."""
        from flowbus.client import _filtering as f
        from flowbus.events.filters import AutomationFilter

        wanted = f.check_filter(automations, AutomationFilter, "automations")
        records = await self._pages("/automations")
        return f.select(records, [wanted.includes] if wanted else [], offset, limit)

    async def read_automation(self, automation_id: str) -> dict[str, Any]:
        answer: dict[str, Any] = await self.request("GET", f"/automations/{_segment(automation_id)}")
        return answer

    async def create_automation(self, spec: dict[str, Any]) -> dict[str, Any]:
        answer: dict[str, Any] = await self.request("POST", "/automations", json_body=spec)
        return answer

    async def update_automation(self, automation_id: str, spec: dict[str, Any]) -> dict[str, Any]:
        answer: dict[str, Any] = await self.request(
            "PUT", f"/automations/{_segment(automation_id)}", json_body=spec)
        return answer

    async def delete_automation(self, automation_id: str) -> None:
        await self.request("DELETE", f"/automations/{_segment(automation_id)}")

    # --- variables ----------------------------------------------------------------------

    async def read_variables(self) -> list[dict[str, Any]]:
        return await self._pages("/variables")

    async def read_variable_by_name(self, name: str) -> dict[str, Any] | None:
        """The variable, or None when there is none (as Prefect)."""
        try:
            answer: dict[str, Any] = await self.request("GET", f"/variables/{_segment(name)}")
        except ApiNotFound:
            return None
        return answer

    async def create_variable(self, name: str, value: Any, tags: list[str] | None = None) -> dict[str, Any]:
        answer: dict[str, Any] = await self.request(
            "POST", "/variables", json_body={"name": name, "value": value, "tags": tags or []})
        return answer

    async def update_variable(self, name: str, value: Any, tags: list[str] | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"value": value}
        if tags is not None:
            body["tags"] = tags
        answer: dict[str, Any] = await self.request("PATCH", f"/variables/{_segment(name)}", json_body=body)
        return answer

    async def delete_variable_by_name(self, name: str) -> None:
        await self.request("DELETE", f"/variables/{_segment(name)}")


async def _read_bounded(response: aiohttp.ClientResponse) -> bytes | None:
    """The whole body, or None past RESPONSE_MAX_BYTES (a broken or hostile server)."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.content.iter_chunked(1024 * 1024):
        size += len(chunk)
        if size > RESPONSE_MAX_BYTES:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def _query_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _error(status: int, body: bytes) -> ApiError:
    detail = body.decode("utf-8", "replace")[:1000]
    try:
        document = json.loads(body)
        if isinstance(document, dict):
            detail = str(document.get("detail") or document.get("title") or detail)
    except ValueError:
        pass
    return (ApiNotFound if status == 404 else ApiError)(status, detail)


from flowbus.client._sync import SyncFlowbusClient as SyncFlowbusClient  # noqa: E402 (uses the classes above)


@overload
def get_client(sync_client: Literal[False] = False, *, api_url: str | None = None,
               api_key: str | None = None) -> FlowbusClient: ...


@overload
def get_client(sync_client: Literal[True], *, api_url: str | None = None,
               api_key: str | None = None) -> SyncFlowbusClient: ...


def get_client(sync_client: bool = False, *, api_url: str | None = None,
               api_key: str | None = None) -> FlowbusClient | SyncFlowbusClient:
    """An API client: :class:`FlowbusClient` (async), or :class:`SyncFlowbusClient`."""
    client = FlowbusClient(api_url, api_key)
    return SyncFlowbusClient(client) if sync_client else client
