"""The records the client returns (Prefect's ``prefect.client.schemas.objects``):
flow runs and deployments as flowbus's API stores them, and the state types."""

from events.records import Deployment, FlowRun
from flowbus.context import TaskRun
from flowbus.states import State, StateType

__all__ = ["Deployment", "FlowRun", "State", "StateType", "TaskRun"]
