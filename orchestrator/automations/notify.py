"""Notifications through named channels: generic webhook, Slack, Microsoft Teams, email.

Subject and body are rendered by the action (sandboxed Jinja, :mod:`events.templates`);
this module only shapes them for the channel and delivers them:

- ``webhook``: ``{"subject", "body", "event"}`` as JSON;
- ``slack``: the incoming-webhook format, ``{"text", "blocks"}`` (a header and a
  markdown section);
- ``teams``: a legacy MessageCard, or an Adaptive Card 1.4 wrapped as a message
  attachment (what Teams Workflows webhooks take);
- ``email``: plain-text email over SMTP with STARTTLS and login when configured
  (stdlib ``smtplib`` in a worker thread).
"""

from __future__ import annotations

import asyncio
import json
import smtplib
import ssl
from email.message import EmailMessage
from typing import Any

from events.notification_channels import (
    Channel,
    EmailChannel,
    SlackChannel,
    TeamsChannel,
    WebhookChannel,
)
from orchestrator.automations.http import DeliveryFailed, HttpSender


def slack_payload(subject: str, body: str) -> dict[str, Any]:
    return {
        "text": f"{subject}\n{body}",
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": subject[:150]}},
            {"type": "section", "text": {"type": "mrkdwn", "text": body[:3000]}},
        ],
    }


def teams_payload(subject: str, body: str, card: str) -> dict[str, Any]:
    if card == "messagecard":
        return {
            "@type": "MessageCard",
            "@context": "https://schema.org/extensions",
            "summary": subject[:256],
            "title": subject,
            "text": body,
        }
    return {
        "type": "message",
        "attachments": [{
            "contentType": "application/vnd.microsoft.card.adaptive",
            "contentUrl": None,
            "content": {
                "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                "type": "AdaptiveCard",
                "version": "1.4",
                "body": [
                    {"type": "TextBlock", "text": subject, "weight": "Bolder", "size": "Medium", "wrap": True},
                    {"type": "TextBlock", "text": body, "wrap": True},
                ],
            },
        }],
    }


def _send_email(config: EmailChannel, subject: str, body: str) -> None:
    message = EmailMessage()
    message["From"] = config.sender
    message["To"] = ", ".join(config.to)
    message["Subject"] = " ".join(subject.splitlines())[:998]
    message.set_content(body)
    with smtplib.SMTP(config.host, config.port, timeout=config.timeout_seconds) as smtp:
        smtp.ehlo()
        if config.starttls:
            smtp.starttls(context=ssl.create_default_context(cafile=config.tls_ca_file))
            smtp.ehlo()
        if config.username:
            smtp.login(config.username, config.password or "")
        smtp.send_message(message)


class Notifier:
    """Delivers one rendered notification through a channel."""

    def __init__(self, http: HttpSender, *, attempts: int) -> None:
        self._http = http
        self._attempts = attempts

    async def send(
        self, channel: Channel, subject: str, body: str, event: dict[str, Any], delivery: str
    ) -> None:
        config = channel.config
        if isinstance(config, EmailChannel):
            await self._http.check_target(f"smtp://{config.host}")
            try:
                await asyncio.to_thread(_send_email, config, subject, body)
            except (smtplib.SMTPException, OSError, ssl.SSLError) as exc:
                raise DeliveryFailed(
                    f"email through {config.host}:{config.port} failed: {type(exc).__name__}: {exc}"
                ) from None
            return
        payload: dict[str, Any]
        headers: dict[str, str] = {}
        if isinstance(config, SlackChannel):
            payload = slack_payload(subject, body)
        elif isinstance(config, TeamsChannel):
            payload = teams_payload(subject, body, config.card)
        else:
            assert isinstance(config, WebhookChannel)
            payload = {"subject": subject, "body": body, "event": event}
            headers = dict(config.headers)
        await self._http.send(
            config.url, json.dumps(payload, default=str).encode(), headers=headers,
            delivery=delivery, attempts=self._attempts,
            secret_url=isinstance(config, SlackChannel | TeamsChannel),
        )
