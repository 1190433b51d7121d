"""Prefect's ``prefect.client.orchestration`` names for flowbus's client."""

from flowbus.client import FlowbusClient, SyncFlowbusClient, get_client

PrefectClient = FlowbusClient
SyncPrefectClient = SyncFlowbusClient

__all__ = ["FlowbusClient", "PrefectClient", "SyncFlowbusClient", "SyncPrefectClient", "get_client"]
