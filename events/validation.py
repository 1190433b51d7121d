"""What makes a stored deployment usable: one check, run by every part that reads one.

The gateway runs :func:`check_deployment` before storing (422 naming the field), and
the orchestrator runs the same function on every deployment it loads, so a
definition the orchestrator would refuse is never accepted by the API. Writes that
bypass the API (anyone with NATS access) still meet the check in the orchestrator
and the runner.

>>> check_deployment(Deployment(name="d", flow_name="f", entrypoint="flows.py:main"))
"""

from __future__ import annotations

from events.entrypoints import EntrypointError, parse_entrypoint
from events.errors import FlowbusError
from events.records import Deployment
from events.schedules import InvalidSchedule, parse_schedule
from events.triggers import InvalidTrigger, parse_deployment_trigger


class InvalidDefinition(FlowbusError, ValueError):
    """A stored definition that breaks a rule; ``field`` says where."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def check_deployment(deployment: Deployment) -> None:
    """:class:`InvalidDefinition` naming the first field the orchestrator or a runner
    would refuse: the entrypoint, a trigger, a schedule."""
    if deployment.entrypoint:
        try:
            parse_entrypoint(deployment.entrypoint)
        except EntrypointError as exc:
            raise InvalidDefinition("entrypoint", str(exc)) from None
    for index, trigger in enumerate(deployment.triggers):
        try:
            parse_deployment_trigger(trigger)
        except InvalidTrigger as exc:
            raise InvalidDefinition(f"triggers.{index}", str(exc)) from None
    for index, schedule in enumerate(deployment.schedules):
        try:
            parse_schedule(schedule)
        except InvalidSchedule as exc:
            raise InvalidDefinition(f"schedules.{index}", str(exc)) from None
