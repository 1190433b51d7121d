"""flowbus: Prefect 3's flow and task API, event-driven on NATS JetStream.

Example::

    from flowbus import flow, task

    @task(retries=2)
    def double(x: int) -> int:
        return 2 * x

    @flow(log_prints=True)
    def main(n: int = 3) -> list[int]:
        return [double(i) for i in range(n)]
"""

from typing import Any

from flowbus.context import get_run_context, tags
from flowbus.exceptions import FlowbusError
from flowbus.flows import Flow, flow
from flowbus.futures import FlowbusFuture, as_completed, wait
from flowbus.logging import get_run_logger
from flowbus.serving import aserve, deploy, serve
from flowbus.states import State
from flowbus.tasks import Task, task, unmapped
from flowbus.utilities.annotations import allow_failure

__version__ = "0.1.0"
_PAUSES = ("pause_flow_run", "resume_flow_run", "suspend_flow_run")


def __getattr__(name: str) -> Any:
    # `get_client` pulls in the HTTP client; only those who use it pay for the import.
    if name == "get_client":
        from flowbus.client import get_client

        return get_client
    if name in _PAUSES:  # pausing talks to the server: imported on first use
        from flowbus import _pauses

        return getattr(_pauses, name)
    raise AttributeError(f"module 'flowbus' has no attribute {name!r}")


__all__ = [
    "Flow",
    "FlowbusError",
    "FlowbusFuture",
    "State",
    "Task",
    "__version__",
    "allow_failure",
    "as_completed",
    "aserve",
    "deploy",
    "flow",
    "get_client",
    "get_run_context",
    "get_run_logger",
    "pause_flow_run",
    "resume_flow_run",
    "serve",
    "suspend_flow_run",
    "tags",
    "task",
    "unmapped",
    "wait",
]
