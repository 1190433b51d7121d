"""The objects Prefect's client takes and returns (``prefect.client.schemas``):
``filters`` for :meth:`flowbus.client.FlowbusClient.read_flow_runs` and
``read_artifacts``, ``sorting`` orders, ``objects`` (the records the API returns), and
``actions`` (what a client sends: `StateCreate`).
"""

from flowbus.client.schemas import actions, events, filters, objects, sorting

__all__ = ["actions", "events", "filters", "objects", "sorting"]
