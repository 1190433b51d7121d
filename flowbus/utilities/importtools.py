"""Names of Python objects as import paths (Prefect's `prefect.utilities.importtools`).

Example::

    to_qualified_name(collections.OrderedDict)  # "collections.OrderedDict"
    from_qualified_name("collections.OrderedDict")  # the class
"""

from __future__ import annotations

import importlib
from typing import Any


def to_qualified_name(obj: Any) -> str:
    """``module.qualname`` of a class or function (builtins keep ``builtins.``)."""
    return f"{obj.__module__}.{obj.__qualname__}"


def from_qualified_name(name: str) -> Any:
    """The object an import path names: ``"pkg.module.Class.attr"``, or a module.

    The longest importable prefix is the module; the rest is read as attributes.
    Raises `ModuleNotFoundError` when no prefix is a module, `AttributeError` when
    an attribute is missing.
    """
    try:
        return importlib.import_module(name)
    except ImportError:
        module_name, dot, attribute = name.rpartition(".")
        if not dot:
            raise
    return getattr(from_qualified_name(module_name), attribute)


__all__ = ["from_qualified_name", "to_qualified_name"]
