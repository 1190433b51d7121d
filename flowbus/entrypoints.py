"""Checking entrypoints: does it define a ``@flow``, and do the parameters fit it?

The flow's module is user code, so it is imported in a separate Python process
(``python -m flowbus.entrypoints``) with the project directory as its working
directory and first on ``sys.path``; a module that crashes, hangs or prints
cannot disturb the deploying process. The child answers with one JSON document:
the flow's name, a JSON schema of its parameters, and any error.

>>> # inspect_entrypoints(Path("."), [("flows.py:greet", {"name": "you"})])
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import json
import os
import subprocess
import sys
import traceback
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from events.errors import FlowbusError
from events.messages import plain

INSPECT_TIMEOUT_SECONDS = 120.0
# Set for the child: a module that calls Flow.deploy at import time must not deploy
# (and start another child) while it is only being inspected.
INSPECTING_ENV = "_FLOWBUS_INSPECTING_ENTRYPOINTS"


class EntrypointError(FlowbusError, ValueError):
    """An entrypoint cannot be loaded, is not a flow, or its parameters do not fit."""


class FlowInfo(BaseModel):
    """What deploying needs to know about a flow."""

    entrypoint: str = Field(description="as given")
    flow_name: str = Field(description="the @flow's name")
    parameter_schema: dict[str, Any] = Field(description="JSON schema of the parameters")
    description: str | None = Field(default=None, description="the flow's description")
    version: str | None = Field(default=None, description="the flow's version")


def inspect_entrypoints(
    root: Path, checks: list[tuple[str, dict[str, Any]]], *, timeout: float = INSPECT_TIMEOUT_SECONDS
) -> list[FlowInfo]:
    """Import each entrypoint in a child process; :class:`EntrypointError` for the first bad one."""
    if not checks:
        return []
    env = dict(os.environ)
    # The child finds flowbus where this process did, and the project first.
    here = str(Path(__file__).resolve().parent.parent)
    env[INSPECTING_ENV] = "1"
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(root.resolve()), here, env.get("PYTHONPATH", "")) if p
    )
    request = json.dumps([{"entrypoint": e, "parameters": p} for e, p in checks])
    try:
        done = subprocess.run(
            [sys.executable, "-m", "flowbus.entrypoints"], input=request, cwd=root,
            capture_output=True, text=True, timeout=timeout, env=env, check=False,
        )
    except subprocess.TimeoutExpired:
        raise EntrypointError(
            f"importing the flows took over {timeout:.0f}s; does a module do work at import time?"
        ) from None
    answer = _last_json_line(done.stdout)
    if answer is None:
        tail = done.stderr.strip().splitlines()[-5:]
        raise EntrypointError(
            f"checking the entrypoints failed (exit {done.returncode}): " + " | ".join(tail)
        )
    infos = []
    for item in answer:
        if "error" in item:
            raise EntrypointError(f"entrypoint {item['entrypoint']!r}: {item['error']}")
        infos.append(FlowInfo.model_validate(item))
    return infos


def _last_json_line(stdout: str) -> list[dict[str, Any]] | None:
    marker = "@@flowbus-entrypoints@@"
    for line in reversed(stdout.splitlines()):
        if line.startswith(marker):
            value = json.loads(line[len(marker):])
            return value if isinstance(value, list) else None
    return None


# --- the child side -------------------------------------------------------------------


def load_flow_object(entrypoint: str, root: Path) -> Any:
    """Import the object an entrypoint names (child side; runs user code)."""
    target, _, function = entrypoint.rpartition(":")
    if target.endswith(".py"):
        path = (root / target).resolve()
        if not path.is_relative_to(root.resolve()):
            raise EntrypointError(f"file {target!r} is outside the project directory")
        if not path.is_file():
            raise EntrypointError(f"file {target!r} does not exist in the project")
        # Unique per project root, so two bundles' "flows.py" never share a module.
        tag = hashlib.blake2b(str(root.resolve()).encode(), digest_size=4).hexdigest()
        name = f"__flowbus_entry_{tag}__" + "_".join(Path(target).with_suffix("").parts)
        spec = importlib.util.spec_from_file_location(name, path)
        if spec is None or spec.loader is None:
            raise EntrypointError(f"{target!r} cannot be imported as a Python file")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    else:
        module = importlib.import_module(target)
    if not hasattr(module, function):
        raise EntrypointError(f"{target!r} defines no {function!r}")
    return getattr(module, function)


def load_flow(entrypoint: str, root: Path) -> Any:
    """The ``@flow`` an entrypoint names, imported from ``root`` (for runners).

    ``root`` is the directory :func:`flowbus.bundles.fetch_bundle` returned, or the
    runner's working directory for code in its image. It is put first on
    ``sys.path`` so the flow's own imports of sibling modules resolve there. Runs
    the module's code; :class:`EntrypointError` when it is missing or not a flow
    (exceptions raised by the module itself propagate).
    """
    from flowbus.flows import Flow

    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    obj = load_flow_object(entrypoint, root)
    if not isinstance(obj, Flow):
        raise EntrypointError(
            f"entrypoint {entrypoint!r} names a {type(obj).__name__}, not a @flow")
    return obj


def parameter_schema(fn: Any) -> dict[str, Any]:
    """A JSON schema of ``fn``'s parameters, from its type hints and defaults."""
    from pydantic import TypeAdapter

    hints = _hints(fn)
    properties: dict[str, Any] = {}
    required: list[str] = []
    extra = False
    for param in inspect.signature(fn).parameters.values():
        if param.kind is inspect.Parameter.VAR_KEYWORD:
            extra = True
            continue
        if param.kind is inspect.Parameter.VAR_POSITIONAL:
            continue
        schema: dict[str, Any] = {}
        if param.name in hints:
            try:
                schema = dict(TypeAdapter(hints[param.name]).json_schema())
            except Exception:  # a type pydantic cannot describe: accept anything
                schema = {}
        schema["title"] = param.name
        if param.default is inspect.Parameter.empty:
            required.append(param.name)
        else:
            try:
                json.dumps(param.default)
                schema["default"] = param.default
            except (TypeError, ValueError):
                pass
        properties[param.name] = schema
    out: dict[str, Any] = {"type": "object", "properties": properties,
                           "additionalProperties": extra}
    if required:
        out["required"] = required
    return out


def _hints(fn: Any) -> dict[str, Any]:
    import typing

    try:
        return dict(typing.get_type_hints(fn))
    except Exception:  # unresolvable forward references: validate without them
        return {}


def check_parameters(fn: Any, parameters: dict[str, Any]) -> None:
    """Unknown names and values that do not fit the type hints; EntrypointError naming them."""
    from pydantic import TypeAdapter, ValidationError

    signature = inspect.signature(fn)
    accepts_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in signature.parameters.values())
    names = {p.name for p in signature.parameters.values()
             if p.kind not in (inspect.Parameter.VAR_KEYWORD, inspect.Parameter.VAR_POSITIONAL)}
    unknown = sorted(set(parameters) - names)
    if unknown and not accepts_any:
        raise EntrypointError(
            f"parameter(s) {', '.join(map(repr, unknown))} are not in the flow's signature "
            f"({', '.join(sorted(names)) or 'no parameters'})"
        )
    hints = _hints(fn)
    bad = []
    for name, value in parameters.items():
        if name not in hints:
            continue
        try:
            TypeAdapter(hints[name]).validate_python(value)
        except ValidationError as exc:
            first = exc.errors(include_url=False)[0]
            bad.append(f"{name}={value!r}: {plain(first)}")
        except Exception:  # a type pydantic cannot validate: leave it to the run
            continue
    if bad:
        raise EntrypointError("parameter(s) do not fit the flow's type hints: " + "; ".join(bad))


def _inspect_one(entrypoint: str, parameters: dict[str, Any], root: Path) -> dict[str, Any]:
    from flowbus.flows import Flow

    try:
        obj = load_flow_object(entrypoint, root)
    except EntrypointError as exc:
        return {"entrypoint": entrypoint, "error": str(exc)}
    except BaseException as exc:  # user code at import: report it, whatever it is
        frames = traceback.extract_tb(exc.__traceback__)
        where = f" ({frames[-1].filename}:{frames[-1].lineno})" if frames else ""
        return {"entrypoint": entrypoint,
                "error": f"importing it raised {type(exc).__name__}: {exc}{where}"}
    if not isinstance(obj, Flow):
        return {"entrypoint": entrypoint,
                "error": f"{entrypoint.rpartition(':')[2]!r} is a {type(obj).__name__}, not a @flow"}
    try:
        check_parameters(obj.fn, parameters)
    except EntrypointError as exc:
        return {"entrypoint": entrypoint, "error": str(exc)}
    return {"entrypoint": entrypoint, "flow_name": obj.name,
            "parameter_schema": parameter_schema(obj.fn),
            "description": obj.description, "version": obj.version}


def main() -> None:
    """Child entry: read the checks on stdin, print the answer as one marked JSON line."""
    checks = json.loads(sys.stdin.read())
    root = Path.cwd()
    results = [_inspect_one(c["entrypoint"], c["parameters"], root) for c in checks]
    sys.stdout.write("\n@@flowbus-entrypoints@@" + json.dumps(results, default=str) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
