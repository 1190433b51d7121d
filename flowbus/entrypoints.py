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
import re
import subprocess
import sys
import traceback
from pathlib import Path
from types import ModuleType
from typing import Any

from pydantic import BaseModel, Field

from events.entrypoints import Entrypoint, locate, parse_entrypoint
from events.entrypoints import EntrypointError as EntrypointError  # raised by this module's API
from events.messages import plain
from events.records import Deployment

INSPECT_TIMEOUT_SECONDS = 120.0
# Set for the child: a module that calls Flow.deploy at import time must not deploy
# (and start another child) while it is only being inspected.
INSPECTING_ENV = "_FLOWBUS_INSPECTING_ENTRYPOINTS"


class FlowInfo(BaseModel):
    """What deploying needs to know about a flow."""

    entrypoint: str = Field(description="as given")
    flow_name: str = Field(description="the @flow's name")
    parameter_schema: dict[str, Any] = Field(description="JSON schema of the parameters")
    description: str | None = Field(default=None, description="the flow's description")
    version: str | None = Field(default=None, description="the flow's version")
    retries: int = Field(default=0, ge=0, description="the flow's retries")
    retry_delay_seconds: float = Field(default=0.0, ge=0, description="its first retry delay")


def retry_policy(flow: Any) -> tuple[int, float]:
    """(retries, delay before the first retry) of a flow, as a deployment stores them.

    A list of delays gives its first; a callable (computed per attempt) gives 0.
    """
    delay = flow.retry_delay_seconds
    if isinstance(delay, int | float):
        first = float(delay)
    elif isinstance(delay, list) and delay and isinstance(delay[0], int | float):
        first = float(delay[0])
    else:
        first = 0.0
    return max(0, int(flow.retries or 0)), max(0.0, first)


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


def load_flow_object(entrypoint: str | Entrypoint, root: Path) -> Any:
    """Import the object an entrypoint names from the code ``root`` (runs user code).

    The rules of :mod:`events.entrypoints` are applied first, so nothing outside
    ``root`` is ever imported: a file is imported from its path, a dotted module with
    ``root`` first on ``sys.path`` (and refused if that name is already taken by a
    module from elsewhere, such as the standard library).
    """
    entry = entrypoint if isinstance(entrypoint, Entrypoint) else parse_entrypoint(entrypoint)
    path = locate(entry, root)
    base = str(root.resolve())
    if entry.is_file:
        module = _import_file(path, base)
    else:
        module = _import_dotted(entry.module, path, base)
    if not hasattr(module, entry.attribute):
        raise EntrypointError(f"{entry.module!r} has no attribute {entry.attribute!r}")
    return getattr(module, entry.attribute)


def _import_file(path: Path, base: str) -> ModuleType:
    # Unique per file, so two bundles' "flows.py" never share a module.
    tag = hashlib.blake2b(str(path).encode(), digest_size=6).hexdigest()
    name = f"__flowbus_entry_{re.sub(r'[^A-Za-z0-9_]', '_', path.stem)}_{tag}__"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise EntrypointError(f"{path.name!r} cannot be imported as a Python file")
    module = importlib.util.module_from_spec(spec)
    # The code root and the file's own directory first, as `python file.py` would have it.
    for directory in (base, str(path.parent)):
        if directory not in sys.path:
            sys.path.insert(0, directory)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


def _import_dotted(name: str, path: Path, base: str) -> ModuleType:
    """``name`` as a package module from the code root; when that name (or its top-level
    package) is already imported from elsewhere (the standard library, another bundle
    of a warm worker), the file in the code root is imported by its path instead, so
    nothing outside the code root runs and the code root's version is the one used."""
    taken = sys.modules.get(name)
    if taken is not None and _origin(taken) == path:
        return taken
    top = sys.modules.get(name.partition(".")[0])
    if taken is None and (top is None or _inside(top, Path(base))):
        if base in sys.path:
            sys.path.remove(base)
        sys.path.insert(0, base)
        module = importlib.import_module(name)
        if _origin(module) == path:
            return module
    return _import_file(path, base)


def _origin(module: ModuleType) -> Path | None:
    origin = getattr(module, "__file__", None)
    return Path(origin).resolve() if origin else None


def _inside(module: ModuleType, base: Path) -> bool:
    places = [getattr(module, "__file__", None), *getattr(module, "__path__", [])]
    return all(p and Path(p).resolve().is_relative_to(base.resolve()) for p in places)


def load_flow(entrypoint: str | Entrypoint, root: Path) -> Any:
    """The ``@flow`` an entrypoint names, imported from the code ``root`` (for runners).

    ``root`` is the directory :func:`flowbus.bundles.fetch_bundle` returned, or the
    runner's code root for code in its image. :class:`EntrypointError` when the
    entrypoint breaks a rule, is missing, or names anything but a ``@flow`` (a plain
    function is refused: it was not written to be run as a deployment); exceptions
    raised by the module itself propagate.
    """
    from flowbus.flows import Flow

    obj = load_flow_object(entrypoint, root)
    if not isinstance(obj, Flow):
        raise EntrypointError(
            f"entrypoint {str(entrypoint)!r} names a {type(obj).__name__}, not a @flow")
    return obj


def resolve_entrypoint(deployment: Deployment) -> tuple[str, str]:
    """(module, attribute) of ``deployment``'s flow, checked against the rules."""
    if not deployment.entrypoint:
        raise EntrypointError(
            f"deployment {deployment.name!r} has no entrypoint; set one like 'flows.py:main'")
    entry = parse_entrypoint(deployment.entrypoint)
    return entry.module, entry.attribute


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
    retries, delay = retry_policy(obj)
    return {"entrypoint": entrypoint, "flow_name": obj.name,
            "parameter_schema": parameter_schema(obj.fn),
            "description": obj.description, "version": obj.version,
            "retries": retries, "retry_delay_seconds": delay}


def main() -> None:
    """Child entry: read the checks on stdin, print the answer as one marked JSON line."""
    checks = json.loads(sys.stdin.read())
    root = Path.cwd()
    results = [_inspect_one(c["entrypoint"], c["parameters"], root) for c in checks]
    sys.stdout.write("\n@@flowbus-entrypoints@@" + json.dumps(results, default=str) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
