"""Prefect 3's names of flowbus's own events and resources.

flowbus names its events and resources ``flowbus.<family>.*`` where Prefect names the
same ones ``prefect.<family>.*`` (``prefect.flow-run.Completed`` is
``flowbus.flow-run.Completed`` here; the resource of a flow-run event is
``flowbus.flow-run.<id>``). Event filters (flowbus.events.filters) and automation
triggers (events/triggers.py) read a Prefect name as the flowbus one, so filters
and triggers written for Prefect match flowbus's events.
"""

from __future__ import annotations

#: The families whose Prefect name means flowbus's (each with its trailing dot).
PREFECT_FAMILIES = ("flow-run.", "task-run.", "deployment.", "automation.", "flow.", "tag.", "asset.")
RESOURCE_ID_LABELS = frozenset({"prefect.resource.id", "flowbus.resource.id"})


def from_prefect_name(name: str) -> str:
    """``name`` with a ``prefect.<family>.`` prefix made ``flowbus.<family>.``; a leading
    ``!`` (a negated label value) and ``*`` wildcards are kept; other names unchanged."""
    negated = name.startswith("!")
    bare = name[1:] if negated else name
    if bare.startswith("prefect.") and bare[8:].startswith(PREFECT_FAMILIES):
        bare = "flowbus." + bare[8:]
    return "!" + bare if negated else bare
