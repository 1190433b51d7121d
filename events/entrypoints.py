"""Entrypoints: the one rule set for where a deployment's flow lives.

An entrypoint is ``path/to/file.py:flow_name`` (a POSIX path relative to the
deployment's code root) or ``package.module:flow_name`` (a module whose file is in
the code root). The code root is the unpacked code bundle, or the directory a
runner is configured to take code from. An entrypoint is never absolute, never
climbs out with ``..``, and never resolves outside the code root, symlinks included;
a dotted module is looked up as a file in the code root, never in the installed
packages (``subprocess:getoutput`` names nothing).

Every part applies these rules: the gateway when a deployment is created or changed
(422 naming the rule), ``flowbus deploy`` before uploading, and the runner again
before it imports anything (the record in the bucket may have been written by
anyone with NATS access). Importing the module and checking that the object is a
``@flow`` is :mod:`flowbus.entrypoints`, built on :func:`locate`.

>>> parse_entrypoint("flows/etl.py:main")
Entrypoint(module='flows/etl.py', attribute='main')
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from events.errors import FlowbusError

MAX_LENGTH = 1024
_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
_ATTRIBUTE = re.compile(_NAME)
_MODULE = re.compile(rf"{_NAME}(?:\.{_NAME})*")
# One path segment of a file entrypoint: no separators, no control characters.
_SEGMENT = re.compile(r"[^/\\\x00-\x1f\x7f:]+")
SHAPE = "'path/to/file.py:flow_name' or 'package.module:flow_name'"


class EntrypointError(FlowbusError, ValueError):
    """An entrypoint that breaks a rule, cannot be found, or does not name a ``@flow``."""


@dataclass(frozen=True, slots=True)
class Entrypoint:
    """A module (a relative ``.py`` path or a dotted name) and the name of the flow in it."""

    module: str
    attribute: str

    @property
    def is_file(self) -> bool:
        return self.module.endswith(".py")

    def __str__(self) -> str:
        return f"{self.module}:{self.attribute}"


def parse_entrypoint(text: object) -> Entrypoint:
    """The entrypoint ``text`` names; :class:`EntrypointError` naming the rule it breaks."""
    if not isinstance(text, str):
        raise EntrypointError(f"entrypoint must be a string like {SHAPE}")
    if len(text) > MAX_LENGTH:
        raise EntrypointError(f"entrypoint is {len(text)} characters, over {MAX_LENGTH}")
    module, sep, attribute = text.strip().rpartition(":")
    if not sep or not module or not attribute:
        raise EntrypointError(f"entrypoint {text!r} must be {SHAPE}")
    if _ATTRIBUTE.fullmatch(attribute) is None:
        raise EntrypointError(f"entrypoint {text!r}: {attribute!r} is not a Python name")
    if module.endswith(".py"):
        return Entrypoint(_relative_path(text, module), attribute)
    if _MODULE.fullmatch(module) is None:
        raise EntrypointError(
            f"entrypoint {text!r}: {module!r} is neither a .py file nor a dotted module name")
    return Entrypoint(module, attribute)


def _relative_path(text: str, module: str) -> str:
    if module.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", module):
        raise EntrypointError(
            f"entrypoint {text!r} is an absolute path; use a path relative to the code root")
    parts = module.replace("\\", "/").split("/")
    if ".." in parts:
        raise EntrypointError(
            f"entrypoint {text!r} contains '..'; it must stay inside the code root")
    kept = [p for p in parts if p not in ("", ".")]
    if not kept or any(_SEGMENT.fullmatch(p) is None for p in kept):
        raise EntrypointError(
            f"entrypoint {text!r}: {module!r} is not a relative path of a .py file")
    return PurePosixPath(*kept).as_posix()


def locate(entry: Entrypoint, root: Path) -> Path:
    """The file of ``entry`` inside ``root``, symlinks resolved; it must stay inside ``root``."""
    base = root.resolve()
    if entry.is_file:
        candidates = [base / entry.module]
    else:
        parts = entry.module.split(".")
        candidates = [base.joinpath(*parts).with_suffix(".py"),
                      base.joinpath(*parts, "__init__.py")]
    for candidate in candidates:
        resolved = candidate.resolve()
        if not resolved.is_relative_to(base):
            raise EntrypointError(
                f"entrypoint {str(entry)!r} resolves to a file outside the code root "
                "(through a symlink); it must stay inside it")
        if resolved.is_file():
            return resolved
    what = "file" if entry.is_file else "module"
    raise EntrypointError(
        f"entrypoint {str(entry)!r}: {what} {entry.module!r} not found in the code root")
