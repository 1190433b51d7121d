"""Where a deployment's flow lives, and how a process loads it.

An entrypoint is ``path/to/file.py:fn`` (relative to the runner's working directory)
or ``package.module:fn`` (importable from it). Code bundles fetched from the object
store extend :func:`resolve_entrypoint`: it is the one place that turns a deployment
into something importable.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from events.errors import FlowbusError
from events.records import Deployment

_FN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
_MODULE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")


class EntrypointError(FlowbusError, ValueError):
    """An entrypoint that cannot name a flow."""


@dataclass(frozen=True, slots=True)
class Entrypoint:
    """A module (a file path or a dotted name) and the attribute holding the flow."""

    module: str
    attribute: str

    @property
    def is_file(self) -> bool:
        return self.module.endswith(".py")

    def __str__(self) -> str:
        return f"{self.module}:{self.attribute}"


def parse_entrypoint(text: str) -> Entrypoint:
    """``'flows/etl.py:main'`` or ``'pkg.flows:main'``; :class:`EntrypointError` otherwise."""
    module, sep, attribute = text.strip().rpartition(":")
    if not sep or not module or not attribute:
        raise EntrypointError(
            f"entrypoint {text!r} must be 'path/to/file.py:function' or 'package.module:function'"
        )
    if not _FN.match(attribute):
        raise EntrypointError(f"entrypoint {text!r}: {attribute!r} is not a Python name")
    if not module.endswith(".py") and not _MODULE.match(module):
        raise EntrypointError(
            f"entrypoint {text!r}: {module!r} is neither a .py file nor a dotted module name"
        )
    if "\x00" in module:
        raise EntrypointError(f"entrypoint {text!r} contains a NUL character")
    return Entrypoint(module, attribute)


def resolve_entrypoint(deployment: Deployment) -> tuple[str, str]:
    """(module path or dotted name, attribute) of ``deployment``'s flow.

    Code from the runner's working directory or image; this is where a fetched code
    bundle would be unpacked and its directory returned instead.
    """
    if not deployment.entrypoint:
        raise EntrypointError(
            f"deployment {deployment.name!r} has no entrypoint; set one like 'flows.py:main'"
        )
    entry = parse_entrypoint(deployment.entrypoint)
    return entry.module, entry.attribute


def in_bundle(root: Path, module: str) -> str:
    """``module`` of an entrypoint, found in the unpacked code bundle at ``root``.

    A file entrypoint becomes the file's absolute path in the bundle (its directory
    goes on ``sys.path`` when it is imported, so sibling modules import as usual); a
    dotted module becomes the file it names in the bundle (``pkg/mod.py`` or
    ``pkg/mod/__init__.py``).
    """
    if module.endswith(".py"):
        return str(root / module)
    parts = module.split(".")
    for candidate in (root.joinpath(*parts).with_suffix(".py"), root.joinpath(*parts, "__init__.py")):
        if candidate.is_file():
            return str(candidate)
    raise EntrypointError(f"module {module!r} is not in the deployment's code bundle")


def _module_name_for(path: Path) -> str:
    digest = hashlib.blake2b(str(path).encode(), digest_size=6).hexdigest()
    return f"flowbus_entrypoint_{re.sub(r'[^A-Za-z0-9_]', '_', path.stem)}_{digest}"


_loaded: dict[tuple[str, str], ModuleType] = {}


def import_module(module: str) -> ModuleType:
    """Import a dotted module or a ``.py`` file (once per process; later calls reuse it)."""
    key = (os.getcwd(), module)
    cached = _loaded.get(key)
    if cached is not None:
        return cached
    loaded = _import(module)
    _loaded[key] = loaded
    return loaded


def _import(module: str) -> ModuleType:
    if not module.endswith(".py"):
        # Importable from the working directory, however the process was started.
        cwd = os.getcwd()
        if cwd not in sys.path:
            sys.path.insert(0, cwd)
        return importlib.import_module(module)
    path = Path(module)
    if not path.is_absolute():
        path = Path(os.getcwd()) / path
    path = path.resolve()
    name = _module_name_for(path)
    if name in sys.modules:
        return sys.modules[name]
    if not path.is_file():
        raise FileNotFoundError(f"entrypoint file {module!r} not found (looked at {path})")
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise EntrypointError(f"cannot load {module!r} as Python source")
    loaded = importlib.util.module_from_spec(spec)
    # Its own directory first, as `python file.py` would have it.
    if str(path.parent) not in sys.path:
        sys.path.insert(0, str(path.parent))
    sys.modules[name] = loaded
    try:
        spec.loader.exec_module(loaded)
    except BaseException:
        del sys.modules[name]
        raise
    return loaded


def load_flow(module: str, attribute: str) -> Any:
    """The flow object at ``module:attribute``; a plain function is made a flow."""
    from flowbus.flows import Flow

    obj: Any = import_module(module)
    for part in attribute.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise EntrypointError(f"{module!r} has no attribute {attribute!r}") from None
    if isinstance(obj, Flow):
        return obj
    if callable(obj):
        return Flow(obj)
    raise EntrypointError(f"{module}:{attribute} is a {type(obj).__name__}, not a flow")
