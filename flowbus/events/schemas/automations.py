"""Prefect's ``prefect.events.schemas.automations``: triggers and automations."""

from events.triggers import CompoundTrigger, EventTrigger, Posture, SequenceTrigger
from flowbus.automations import Automation

__all__ = ["Automation", "CompoundTrigger", "EventTrigger", "Posture", "SequenceTrigger"]
