"""The REST API under ``/api/v1``: one router per resource, all described by one OpenAPI document."""

from __future__ import annotations

from gateway.api.routing import ApiRouter


def routers() -> list[ApiRouter]:
    """Every API router, in the order their routes are installed."""
    from gateway.api import (
        artifacts,
        assets,
        automations,
        blocks,
        concurrency_limits,
        deployments,
        events_api,
        flow_runs,
        keys,
        runners,
        sources,
        task_runs,
        variables,
        webhooks_api,
    )

    return [deployments.router, flow_runs.router, automations.router, variables.router,
            events_api.router, webhooks_api.router, keys.router, sources.router,
            artifacts.router, blocks.router, concurrency_limits.router, task_runs.router,
            assets.router, runners.router]
