"""Deploying a Prefect ``prefect.yaml`` with ``flowbus deploy``.

Its ``deployments`` become a flowbus project (:mod:`flowbus.project`): ``name``,
``entrypoint``, ``parameters``, ``tags``, ``description``, ``version``,
``schedules`` (``cron`` / ``interval`` / ``rrule`` with ``timezone``,
``anchor_date``, ``active``, ``parameters``), ``triggers``, ``concurrency_limit``
and ``work_pool.name`` carry over. A key flowbus does not use gets one message
naming it and what happens instead (:attr:`Converted.notes`); a key that would
change what runs, where flowbus cannot follow (a ``pull`` step that fetches code,
``catchup: true``), or a key neither knows, is refused with a
:class:`~flowbus.project.ProjectError` naming it. Placeholders (``{{ $ENV_VAR }}``,
``{{ prefect.variables.name }}``) are filled first (:mod:`flowbus._yaml_templates`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from flowbus import _yaml_templates
from flowbus.project import PROJECT_FILE_MAX_BYTES, Project, ProjectError, load_yaml, parse_project

SET_WORKING_DIRECTORY = "prefect.deployments.steps.set_working_directory"
_TOP_IGNORED = {
    "name": "the project name is not used",
    "prefect-version": "not used",
    "build": "flowbus ships the project directory as a code bundle, not an image: build steps are not run",
    "push": "flowbus uploads the code bundle itself: push steps are not run",
    "definitions": "used only through YAML anchors",
}
_DEPLOYMENT_IGNORED = {
    "flow_name": "the flow's name comes from the entrypoint",
    "enforce_parameter_schema": "flowbus always validates parameters against the flow's signature",
    "parameter_openapi_schema": "flowbus derives the schema from the flow's signature",
    "version_type": "not used",
    "paused": "pause it after deploying with `flowbus deployment pause`",
    "build": "build steps are not run",
    "push": "push steps are not run",
    "job_variables": "runners take no job variables",
    "concurrency_options": "collisions queue (ENQUEUE)",
}
_KNOWN = {"name", "entrypoint", "parameters", "tags", "description", "version", "schedules",
          "schedule", "triggers", "work_pool", "concurrency_limit", "pull"}  # fmt: skip
_SCHEDULE_KEYS = {"cron", "interval", "anchor_date", "rrule", "timezone", "active", "parameters"}


@dataclass
class Converted:
    project: Project
    notes: list[str] = field(default_factory=list)


def parse_prefect_yaml(text: str, origin: str = "prefect.yaml", *, variables: Mapping[str, Any] | None = None,
                       environ: Mapping[str, str] | None = None) -> Converted:  # fmt: skip
    """The flowbus project a ``prefect.yaml`` describes, with a note per ignored key.

    ``variables``: the values of the variables its placeholders name (see
    :func:`prefect_yaml_variables`); ``environ``: the environment (``os.environ``).
    """
    data = _load(text, origin)
    notes: list[str] = []
    for key in data:
        if key == "deployments":
            continue
        if key == "pull":
            _check_pull(data[key], f"{origin}: pull", notes)
        elif key in _TOP_IGNORED:
            if data[key] not in (None, [], {}):
                    notes.append(f"{origin}: {key}: ignored ({_TOP_IGNORED[key]})")
        else:
            raise ProjectError(f"{origin}: unknown top-level key {str(key)[:100]!r}")
    env = os.environ if environ is None else environ
    deployments = [_deployment(_yaml_templates.resolve(d, _where(d, i, origin), variables or {}, env) if
                               isinstance(d, dict) else d, i, origin, notes)
                   for i, d in enumerate(data["deployments"])]  # fmt: skip
    import json

    project = parse_project(json.dumps({"deployments": deployments}, default=str), origin)
    return Converted(project, notes)


def _load(text: str, origin: str) -> dict[str, Any]:
    data = load_yaml(text, origin)
    _check_size(data, origin)
    if not isinstance(data, dict) or not isinstance(data.get("deployments"), list) or not data["deployments"]:
        raise ProjectError(f"{origin} must be a mapping with a non-empty 'deployments' list")
    return data


def prefect_yaml_variables(text: str, origin: str = "prefect.yaml") -> set[str]:
    """The variables the deployments of a ``prefect.yaml`` name in placeholders."""
    return _yaml_templates.variables_used(_load(text, origin)["deployments"])


def _where(raw: dict[str, Any], index: int, origin: str) -> str:
    return f"{origin}: deployment {str(raw.get('name', index))[:100]!r}"


MAX_VALUES = 100_000


def _check_size(data: Any, origin: str) -> None:
    """Refuse a file whose values, with YAML aliases expanded, are too many (or endless)."""
    count = 0
    stack = [data]
    while stack:
        item = stack.pop()
        count += 1
        if count > MAX_VALUES:
            raise ProjectError(f"{origin} expands to over {MAX_VALUES} values (YAML aliases?)")
        if isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def _deployment(raw: Any, index: int, origin: str, notes: list[str]) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise ProjectError(f"{origin}: deployments[{index}] must be a mapping")
    where = _where(raw, index, origin)
    out: dict[str, Any] = {}
    for key, value in raw.items():
        if key in _DEPLOYMENT_IGNORED:
            if value not in (None, {}, [], False) or (key == "paused" and value):
                notes.append(f"{where}: {key}: ignored ({_DEPLOYMENT_IGNORED[key]})")
        elif key not in _KNOWN:
            raise ProjectError(f"{where}: unknown key {str(key)[:100]!r}")
        elif key == "pull":
            _check_pull(value, f"{where}: pull", notes)
        elif key == "work_pool":
            out.update(_work_pool(value, where, notes))
        elif key == "concurrency_limit":
            limit = value.get("limit") if isinstance(value, dict) else value
            if isinstance(value, dict) and str(value.get("collision_strategy", "ENQUEUE")).upper() != "ENQUEUE":
                out["collision_strategy"] = value["collision_strategy"]
            if limit is not None:
                out["concurrency_limit"] = limit
        elif key in ("schedules", "schedule"):
            items = value if isinstance(value, list) else [value] if value else []
            out.setdefault("schedules", []).extend(_schedule(s, f"{where}: {key}", notes) for s in items)
        elif value is not None:
            out[key] = value
    if "collision_strategy" in out:
        raise ProjectError(f"{where}: concurrency_limit.collision_strategy "
                           f"{str(out['collision_strategy'])[:50]!r} is not supported (runs queue)")
    return out


def _work_pool(value: Any, where: str, notes: list[str]) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ProjectError(f"{where}: work_pool must be a mapping with a 'name'")
    for key, item in value.items():
        if key == "name":
            continue
        if key in ("work_queue_name", "job_variables"):
            if item:
                notes.append(f"{where}: work_pool.{key}: ignored (runners of the pool take every run of it)")
        else:
            raise ProjectError(f"{where}: unknown key work_pool.{str(key)[:100]!r}")
    return {"work_pool": value["name"]} if value.get("name") else {}


def _schedule(value: Any, where: str, notes: list[str]) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ProjectError(f"{where}: a schedule must be a mapping (cron, interval or rrule)")
    out: dict[str, Any] = {}
    for key, item in value.items():
        if key in _SCHEDULE_KEYS:
            out[key] = item
        elif key == "catchup":
            if item:
                raise ProjectError(f"{where}: catchup: true is not supported (flowbus skips missed slots, "
                                   "or runs the latest once with catchup: latest in flowbus.yaml)")
        elif key == "day_or":
            if item is False:
                raise ProjectError(f"{where}: day_or: false is not supported (cron days match either field)")
        elif key in ("slug", "max_active_runs", "max_scheduled_runs"):
            if item is not None:
                notes.append(f"{where}: {key}: ignored (not used by flowbus schedules)")
        else:
            raise ProjectError(f"{where}: unknown schedule key {str(key)[:100]!r}")
    return out


def _check_pull(steps: Any, where: str, notes: list[str]) -> None:
    if steps is None:
        return
    if not isinstance(steps, list):
        raise ProjectError(f"{where} must be a list of steps")
    for step in steps:
        name = next(iter(step), None) if isinstance(step, dict) and len(step) == 1 else None
        if name != SET_WORKING_DIRECTORY:
            shown = str(name if name is not None else step)[:100]
            raise ProjectError(f"{where}: step {shown!r} is not supported: flowbus runs the code bundle "
                               "it uploads from the project directory (only set_working_directory is accepted)")
        notes.append(f"{where}: set_working_directory: ignored (runs start in the code bundle's root)")


def read_prefect_yaml(path: Any) -> str:
    """The text of ``path`` (a ``prefect.yaml``), or a ProjectError saying why not."""
    from pathlib import Path

    file = Path(path)
    try:
        if file.stat().st_size > PROJECT_FILE_MAX_BYTES:
            raise ProjectError(f"{file} is over {PROJECT_FILE_MAX_BYTES} bytes")
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ProjectError(f"no project file at {file}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ProjectError(f"cannot read {file}: {exc}") from None
    return text


def load_prefect_yaml(path: Any, *, variables: Mapping[str, Any] | None = None) -> Converted:
    """Read and convert ``path`` (a ``prefect.yaml``)."""
    return parse_prefect_yaml(read_prefect_yaml(path), str(path), variables=variables)


__all__ = ["Converted", "load_prefect_yaml", "parse_prefect_yaml", "prefect_yaml_variables", "read_prefect_yaml"]
