"""The ``{{ ... }}`` placeholders of a ``prefect.yaml``, resolved as ``prefect deploy`` does.

- ``{{ $NAME }}``: the environment variable ``NAME`` of the ``flowbus deploy`` process;
- ``{{ prefect.variables.name }}`` (or ``flowbus.variables.name``): the variable
  ``name`` of the server deployed to; a placeholder that is the whole value takes the
  variable's JSON value (a number stays a number), inside text its ``str()``;
- ``{{ event.* }}`` and other names inside ``triggers`` are the triggers' own templates,
  filled when an event arrives: left as they are.

Where Prefect quietly leaves ``{{ $UNSET }}`` in place or puts ``""`` for a missing
variable, flowbus refuses with a :class:`~flowbus.project.ProjectError` naming the key.
Block references (``{{ prefect.blocks.* }}``) and step outputs (``{{ step-id.key }}``)
are refused too: flowbus runs no build, push or pull steps that would produce them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from flowbus.project import ProjectError

PLACEHOLDER = re.compile(r"{{\s*([\w.\-\[\]$]+)\s*}}")
VARIABLE_PREFIXES = ("prefect.variables.", "flowbus.variables.")
_SKIPPED = {"build", "push", "pull", "job_variables"}  # reported and ignored: never resolved


def _variable(name: str) -> str | None:
    return next((name[len(p):] for p in VARIABLE_PREFIXES if name.startswith(p)), None)


def _walk(value: Any, path: str) -> list[tuple[str, str]]:
    """Every (path, string) in ``value``, outside the keys flowbus ignores."""
    if isinstance(value, str):
        return [(path, value)]
    if isinstance(value, dict):
        found: list[tuple[str, str]] = []
        for key, item in value.items():
            if str(key) not in _SKIPPED:
                found.extend(_walk(item, f"{path}.{key}" if path else str(key)))
        return found
    if isinstance(value, list):
        return [pair for i, item in enumerate(value) for pair in _walk(item, f"{path}[{i}]")]
    return []


def variables_used(deployments: Any) -> set[str]:
    """The names of the variables the deployments' placeholders read."""
    names = set()
    for _, text in _walk(deployments, ""):
        for name in PLACEHOLDER.findall(text):
            variable = _variable(name)
            if variable is not None:
                names.add(variable)
    return names


def resolve(value: Any, where: str, variables: Mapping[str, Any], environ: Mapping[str, str],
            path: str = "") -> Any:  # fmt: skip
    """``value`` (one deployment of a prefect.yaml) with its placeholders filled."""
    if isinstance(value, str):
        return _resolve_text(value, where, path, variables, environ)
    if isinstance(value, dict):
        return {k: item if str(k) in _SKIPPED else
                resolve(item, where, variables, environ, f"{path}.{k}" if path else str(k))
                for k, item in value.items()}  # fmt: skip
    if isinstance(value, list):
        return [resolve(item, where, variables, environ, f"{path}[{i}]") for i, item in enumerate(value)]
    return value


def _resolve_text(text: str, where: str, path: str, variables: Mapping[str, Any],
                  environ: Mapping[str, str]) -> Any:  # fmt: skip
    in_trigger = path.startswith("triggers")
    whole = PLACEHOLDER.fullmatch(text.strip())

    def one(match: re.Match[str]) -> Any:
        name = match.group(1)
        variable = _variable(name)
        if name.startswith("$"):
            if name[1:] not in environ:
                raise ProjectError(f"{where}: {path}: the environment variable {name[1:]!r} of "
                                   f"{match.group(0)!r} is not set")
            return environ[name[1:]]
        if variable is not None:
            if variable not in variables:
                raise ProjectError(f"{where}: {path}: {match.group(0)!r} names the variable {variable!r}, "
                                   "which the server has not got (create it with `flowbus variable set`)")
            return variables[variable]
        if in_trigger:
            return match.group(0)  # the trigger's own template, filled per event
        what = "a block reference" if name.startswith(("prefect.blocks.", "flowbus.blocks.")) else \
            "a step output or an unknown placeholder"  # fmt: skip
        raise ProjectError(f"{where}: {path}: {match.group(0)!r} is {what}; flowbus resolves only "
                           "'{{ $ENV_VAR }}' and '{{ prefect.variables.name }}' here")

    if whole is not None and (whole.group(1).startswith(VARIABLE_PREFIXES)):
        return one(whole)
    return PLACEHOLDER.sub(lambda m: str(one(m)), text)
