"""Prefect's ``prefect.events.schemas.deployment_triggers``: triggers given to
``serve`` / ``deploy`` / ``to_deployment``."""

from events.triggers import (
    DeploymentCompoundTrigger,
    DeploymentEventTrigger,
    DeploymentSequenceTrigger,
)

__all__ = ["DeploymentCompoundTrigger", "DeploymentEventTrigger", "DeploymentSequenceTrigger"]
