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

from flowbus.context import get_run_context, tags
from flowbus.exceptions import FlowbusError
from flowbus.flows import Flow, flow
from flowbus.futures import FlowbusFuture, as_completed, wait
from flowbus.logging import get_run_logger
from flowbus.serving import serve
from flowbus.states import State
from flowbus.tasks import Task, task, unmapped

__version__ = "0.1.0"

__all__ = [
    "Flow",
    "FlowbusError",
    "FlowbusFuture",
    "State",
    "Task",
    "__version__",
    "as_completed",
    "flow",
    "get_run_context",
    "get_run_logger",
    "serve",
    "tags",
    "task",
    "unmapped",
    "wait",
]
