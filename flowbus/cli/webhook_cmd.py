"""``flowbus webhook``: create, list, show, delete webhooks and rotate their secrets.

Through the gateway's REST API (``/api/v1/webhooks``), which keeps the secrets; see
docs/webhooks.md for what each sender signs and which header carries it.
"""

from __future__ import annotations

import json
import os
import re
from typing import Any

import click

from events.webhook_rules import VERIFIER_NAMES as VERIFIERS
from flowbus.cli._api import api_client, hooks_url
from flowbus.cli._common import print_table, run_async

# What a sender must send, per verifier (docs/webhooks.md).
SIGNED_WITH = {
    "none": "nothing: anyone who knows the URL can send events",
    "github": "header X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the body>",
    "stripe": "header Stripe-Signature: t=<unix time>,v1=<hex HMAC-SHA256 of '<t>.<body>'>",
    "slack": "headers X-Slack-Request-Timestamp and X-Slack-Signature: "
             "v0=<hex HMAC-SHA256 of 'v0:<timestamp>:<body>'>",
    "hmac": "header {header}: <hex HMAC-SHA256 of the body> ('sha256=' prefix accepted)",
}


_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")


def secret_from_env(name: str, where: str) -> str:
    """The webhook secret in environment variable ``name``; a clear error naming ``where``
    (an option or a project key) when it is unset or not a valid secret. Never quoted."""
    from events.webhook_rules import secret_problem

    if not _ENV_NAME.match(name):
        raise click.BadParameter(f"{name[:100]!r} is not an environment variable name",
                                 param_hint=where)
    value = os.environ.get(name)
    if value is None or value == "":
        raise click.BadParameter(f"environment variable {name} is not set; export it with the "
                                 "secret your sender signs with", param_hint=where)
    problem = secret_problem(value)
    if problem is not None:
        raise click.BadParameter(f"the secret in {name} {problem}", param_hint=where)
    return value


def signed_with(hook: dict[str, Any]) -> str:
    text = SIGNED_WITH.get(str(hook.get("verifier")), "?")
    return text.format(header=hook.get("signature_header") or "?")


@click.group()
def webhook() -> None:
    """Webhooks: URLs that turn any HTTP request (GitHub, Stripe, Slack, ...) into events."""


@webhook.command("create")
@click.argument("slug")
@click.option("--verifier", type=click.Choice(VERIFIERS), required=True,
              help="how deliveries are signed ('none' only when anyone may send events)")
@click.option("--signature-header", default=None,
              help="with --verifier hmac: the header holding the signature")
@click.option("--type", "event_type", default=None,
              help="the event type (a template), e.g. com.github.push  [default: webhook.<slug>]")
@click.option("--data", "data_template", default=None,
              help="the event's data (a template)  [default: {{ body }}]")
@click.option("--template-json", default=None,
              help="all CloudEvent attributes as one JSON object of templates")
@click.option("--description", default="", help="what it is for")
@click.option("--secret-env", default=None, metavar="NAME",
              help="take the secret from environment variable NAME (for senders that make their "
                   "own, e.g. Stripe or Slack); it is never shown back")
@run_async
async def create(slug: str, verifier: str, signature_header: str | None, event_type: str | None,
                 data_template: str | None, template_json: str | None, description: str,
                 secret_env: str | None) -> None:
    """Create webhook SLUG; prints its URL and, once only, the secret the gateway made
    (none is printed with --secret-env)."""
    template = _template(event_type, data_template, template_json)
    body: dict[str, Any] = {"slug": slug, "verifier": verifier, "description": description}
    if secret_env is not None:
        body["secret"] = secret_from_env(secret_env, "--secret-env")
    if signature_header is not None:
        body["signature_header"] = signature_header
    if template is not None:
        body["template"] = template
    async with api_client() as client:
        hook = await client.request("POST", "/webhooks", json_body=body)
        url = hooks_url(client.api_url, hook["slug"])
    click.echo(f"created webhook {hook['slug']}")
    click.echo(f"  URL     {url}")
    if secret_env is not None:
        click.echo(f"  secret  from ${secret_env} (not shown)")
    else:
        click.echo(f"  secret  {hook['secret']}  (shown once: store it in the sender now)")
    click.echo(f"  signed  {signed_with(hook)}")
    click.echo(f"  event   type {hook['template'].get('type')!r}")


def _template(event_type: str | None, data: str | None, raw: str | None) -> dict[str, Any] | None:
    if raw is not None:
        if event_type is not None or data is not None:
            raise click.UsageError("give --template-json, or --type/--data, not both")
        try:
            value = json.loads(raw)
        except ValueError as exc:
            raise click.BadParameter(f"not valid JSON: {exc}", param_hint="--template-json") from None
        if not isinstance(value, dict):
            raise click.BadParameter("must be a JSON object", param_hint="--template-json")
        return value
    if event_type is None and data is None:
        return None
    return {"type": event_type or "webhook.{{ slug }}", "data": data or "{{ body }}"}


@webhook.command("ls")
@click.option("--json", "as_json", is_flag=True, help="print JSON")
@run_async
async def ls(as_json: bool) -> None:
    """List webhooks (never their secrets)."""
    async with api_client() as client:
        hooks = await client._pages("/webhooks")
        api_url = client.api_url
    if as_json:
        click.echo(json.dumps(hooks, indent=2))
        return
    print_table(["slug", "verifier", "enabled", "event type", "URL", "description"],
                [[h["slug"], h["verifier"], "yes" if h.get("enabled", True) else "no",
                  str(h.get("template", {}).get("type", "")), hooks_url(api_url, h["slug"]),
                  h.get("description", "")] for h in sorted(hooks, key=lambda h: h["slug"])],
                empty="no webhooks; create one with `flowbus webhook create`")


@webhook.command("show")
@click.argument("slug")
@run_async
async def show(slug: str) -> None:
    """Print webhook SLUG: its URL, how deliveries are signed, its template (not the secret)."""
    async with api_client() as client:
        hook = await client.request("GET", f"/webhooks/{_segment(slug)}")
        url = hooks_url(client.api_url, hook["slug"])
    click.echo(f"URL     {url}")
    click.echo(f"signed  {signed_with(hook)}")
    click.echo(json.dumps(hook, indent=2))


@webhook.command("rm")
@click.argument("slug")
@run_async
async def rm(slug: str) -> None:
    """Delete webhook SLUG (its URL answers 404 from then on)."""
    async with api_client() as client:
        await client.request("DELETE", f"/webhooks/{_segment(slug)}")
    click.echo(f"deleted webhook {slug}")


@webhook.command("rotate-secret")
@click.argument("slug")
@click.option("--secret-env", default=None, metavar="NAME",
              help="the new secret is the one in environment variable NAME (not shown back)")
@run_async
async def rotate_secret(slug: str, secret_env: str | None) -> None:
    """Give webhook SLUG a new secret (made by the gateway and shown once, or taken from
    --secret-env); the old one stops working at once."""
    body = None if secret_env is None else {"secret": secret_from_env(secret_env, "--secret-env")}
    async with api_client() as client:
        hook = await client.request("POST", f"/webhooks/{_segment(slug)}/rotate-secret",
                                    json_body=body)
    if secret_env is not None:
        click.echo(f"new secret of webhook {hook['slug']}: from ${secret_env} (not shown)")
    else:
        click.echo(f"new secret of webhook {hook['slug']}: {hook['secret']}  (shown once)")


def _segment(value: str) -> str:
    from urllib.parse import quote

    return quote(value, safe="")
