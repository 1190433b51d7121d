"""The objects Prefect's client takes and returns (``prefect.client.schemas``):
``filters`` for :meth:`flowbus.client.FlowbusClient.read_flow_runs` and
``read_artifacts``, ``sorting`` orders, and ``objects`` (the records the API returns).
"""

from flowbus.client.schemas import events, filters, objects, sorting

__all__ = ["events", "filters", "objects", "sorting"]
