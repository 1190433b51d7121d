"""Registries of implementations by name (Prefect's `prefect.utilities.dispatch`).

flowbus has one: the serializers `result_serializer="..."` names, by name.

Example::

    from flowbus.serializers import Serializer
    from flowbus.utilities.dispatch import get_registry_for_type

    get_registry_for_type(Serializer)["json"]  # the JSON serializer
"""

from __future__ import annotations

from typing import Any


def get_registry_for_type(cls: type[Any]) -> dict[str, Any] | None:
    """The live registry of `cls`'s implementations by name, or None when `cls` has none.

    For `flowbus.serializers.Serializer`: the serializers by name; adding one makes
    its name usable as a `result_serializer` (and readable from stored records).
    """
    from flowbus import serializers

    if cls is serializers.Serializer:
        return serializers._BY_NAME
    return None


__all__ = ["get_registry_for_type"]
