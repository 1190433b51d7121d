"""``flowbus deploy``'s part for the ``webhooks:`` of ``flowbus.yaml``.

Every secret is read from its environment variable before anything is deployed, so a
missing or unfit one stops the deploy with the key at fault named. Webhooks are then
created, or updated to what the file says (secret included), through the gateway's
REST API, which keeps the secrets: running it again with the same file and secrets
changes nothing a sender sees.
"""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import quote

from events.webhook_rules import secret_problem
from flowbus.cli._api import api_client, hooks_url
from flowbus.project import ProjectError, WebhookEntry


def read_secrets(entries: list[WebhookEntry], origin: str) -> dict[str, str]:
    """Each webhook's secret by slug, from its ``secret_env``; ProjectError naming the key."""
    out: dict[str, str] = {}
    for entry in entries:
        if entry.secret_env is None:
            continue
        where = f"{origin}: webhook {entry.slug!r} field secret_env"
        value = os.environ.get(entry.secret_env)
        if not value:
            raise ProjectError(
                f"{where}: environment variable {entry.secret_env} is not set; export it with "
                "the secret the sender signs with (nothing was deployed)"
            )
        problem = secret_problem(value)
        if problem is not None:
            raise ProjectError(f"{where}: the secret in {entry.secret_env} {problem} "
                               "(nothing was deployed)")
        out[entry.slug] = value
    return out


def _spec(entry: WebhookEntry) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "description": entry.description, "enabled": entry.enabled,
        "verifier": entry.verifier, "signature_header": entry.signature_header,
    }
    if entry.template is not None:
        spec["template"] = entry.template
    return spec


async def apply_webhooks(entries: list[WebhookEntry], secrets: dict[str, str]) -> list[str]:
    """Create or update each webhook; one line per webhook saying what was done."""
    from flowbus.client import ApiError

    lines: list[str] = []
    async with api_client() as client:
        for entry in entries:
            try:
                lines.append(await _apply(client, entry, secrets.get(entry.slug)))
            except ApiError as exc:
                done = f"; {len(lines)} webhook(s) before it applied" if lines else ""
                raise ApiError(exc.status, f"webhook {entry.slug!r}: {exc.detail} (the deployments "
                               f"above are deployed{done}; fix it and deploy again)") from None
    return lines


async def _apply(client: Any, entry: WebhookEntry, secret: str | None) -> str:
    from flowbus.client import ApiNotFound

    path = f"/webhooks/{quote(entry.slug, safe='')}"
    try:
        await client.request("GET", path)
    except ApiNotFound:
        body = {"slug": entry.slug, **_spec(entry)}
        if body["signature_header"] is None:
            del body["signature_header"]
        if secret is not None:
            body["secret"] = secret
        await client.request("POST", "/webhooks", json_body=body)
        done = "created"
    else:
        # The secret first: a verifier switched on is never checked with an old one.
        if secret is not None:
            await client.request("POST", f"{path}/rotate-secret",
                                 json_body={"secret": secret})
        await client.request("PATCH", path, json_body=_spec(entry))
        done = "updated"
    source = f"secret from ${entry.secret_env}" if entry.secret_env else "unsigned"
    return (f"{done} webhook {entry.slug} ({entry.verifier}, {source}) at "
            f"{hooks_url(client.api_url, entry.slug)}")
