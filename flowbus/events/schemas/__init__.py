"""Prefect's ``prefect.events.schemas`` modules: ``events``, ``automations``,
``deployment_triggers``."""
