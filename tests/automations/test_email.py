"""Email notifications to a real SMTP server on loopback (aiosmtpd): STARTTLS and login."""

from __future__ import annotations

import ssl
import subprocess
from collections.abc import Iterator
from email import message_from_bytes
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from events import automation_store as store
from events.bus import Bus
from events.embedded import free_port
from orchestrator.service import Orchestrator
from tests.automations.support import event, wait_events, wait_until


class Mailbox:
    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []
        self.logins: list[str] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append({"to": envelope.rcpt_tos, "message": message_from_bytes(envelope.content),
                              "tls": session.ssl is not None})
        return "250 OK"

    def authenticate(self, server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
        if isinstance(data, LoginPassword) and (data.login, data.password) == (b"robot", b"pw-123"):
            self.logins.append(data.login.decode())
            return AuthResult(success=True)
        return AuthResult(success=False, handled=False)


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[Path, Path]:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )
    return cert, key


@pytest.fixture
def smtp(certificate: tuple[Path, Path]) -> Iterator[tuple[Controller, Mailbox]]:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(str(certificate[0]), str(certificate[1]))
    mailbox = Mailbox()
    controller = Controller(
        mailbox, hostname="127.0.0.1", port=free_port(), tls_context=context, require_starttls=True,
        authenticator=mailbox.authenticate, auth_required=True,
    )
    controller.start()
    try:
        yield controller, mailbox
    finally:
        controller.stop()


async def test_email_goes_out_over_starttls_with_login(
    bus: Bus, orchestrator: Orchestrator, smtp: tuple[Controller, Mailbox], certificate: tuple[Path, Path]
) -> None:
    controller, mailbox = smtp
    await store.save_channel(bus, {"name": "oncall", "config": {
        "kind": "email", "host": "127.0.0.1", "port": controller.port, "username": "robot",
        "password": "pw-123", "sender": "flowbus@example.com", "to": ["ops@example.com"],
        "tls_ca_file": str(certificate[0]),
    }})
    made = await store.create_automation(bus, {
        "name": "mail", "trigger": {"expect": ["shop.order.created"]},
        "actions": [{"type": "send-notification", "channel": "oncall",
                     "subject": "Order {{ event.data.order }}", "body": "Total: {{ event.data.total }}"}],
    })
    await wait_until(lambda: _known(orchestrator, made.id))
    await bus.publish(event("shop.order.created", data={"order": "M-1", "total": 9}))
    await wait_events(bus, "flowbus.automation.action.executed")
    (mail,) = mailbox.messages
    assert mail["tls"] and mailbox.logins == ["robot"] and mail["to"] == ["ops@example.com"]
    assert mail["message"]["Subject"] == "Order M-1"
    assert mail["message"].get_payload().strip() == "Total: 9"


async def test_a_wrong_smtp_password_is_dead_lettered_with_the_reason(
    bus: Bus, orchestrator: Orchestrator, smtp: tuple[Controller, Mailbox], certificate: tuple[Path, Path]
) -> None:
    controller, mailbox = smtp
    await store.save_channel(bus, {"name": "oncall", "config": {
        "kind": "email", "host": "127.0.0.1", "port": controller.port, "username": "robot",
        "password": "wrong", "sender": "flowbus@example.com", "to": ["ops@example.com"],
        "tls_ca_file": str(certificate[0]),
    }})
    made = await store.create_automation(bus, {
        "name": "mail", "trigger": {"expect": ["shop.order.created"]},
        "actions": [{"type": "send-notification", "channel": "oncall", "body": "x"}],
    })
    await wait_until(lambda: _known(orchestrator, made.id))
    await bus.publish(event("shop.order.created"))
    (failed,) = await wait_events(bus, "flowbus.automation.action.failed")
    assert "SMTPAuthenticationError" in failed.data["reason"] and mailbox.messages == []


async def _known(orchestrator: Orchestrator, automation_id: str) -> bool:
    return automation_id in orchestrator.automations.catalog.automations
