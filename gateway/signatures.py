"""Webhook signature verifiers: GitHub, Stripe, Slack and generic HMAC-SHA256.

Each is a pure function of the secret, the headers, the raw body and the time;
it returns nothing when the delivery is authentic and raises
:class:`SignatureRejected` saying why when it is not. Digests are compared with
:func:`hmac.compare_digest`. Timestamped schemes (Stripe, Slack) refuse
deliveries older than the tolerance; the gateway refuses the same signature seen
twice within it through the shared replay bucket (:mod:`events.replays`).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from enum import StrEnum

from events.errors import FlowbusError


class SignatureRejected(FlowbusError):
    """A webhook delivery's signature is missing, wrong, stale or replayed."""


class Verifier(StrEnum):
    NONE = "none"
    GITHUB = "github"
    STRIPE = "stripe"
    SLACK = "slack"
    HMAC = "hmac"


def _hmac_hex(secret: str, payload: bytes) -> str:
    return hmac.new(secret.encode(), payload, hashlib.sha256).hexdigest()


def _header(headers: Mapping[str, str], name: str) -> str:
    value = headers.get(name)
    if not value:
        raise SignatureRejected(f"header {name} is missing")
    return value


def _check_age(timestamp: str, now: float, tolerance: float, header: str) -> None:
    try:
        sent = int(timestamp)
    except ValueError:
        raise SignatureRejected(f"{header} timestamp {timestamp[:40]!r} is not an integer") from None
    if abs(now - sent) > tolerance:
        raise SignatureRejected(
            f"{header} timestamp {sent} is {abs(now - sent):.0f} s away from now, over the "
            f"tolerance of {tolerance:.0f} s (stale or replayed delivery)"
        )


def verify_github(secret: str, headers: Mapping[str, str], body: bytes) -> str:
    """``X-Hub-Signature-256: sha256=<hex HMAC of the body>``; returns the signature."""
    value = _header(headers, "X-Hub-Signature-256")
    if not value.startswith("sha256="):
        raise SignatureRejected("X-Hub-Signature-256 must start with 'sha256='")
    if not hmac.compare_digest(value[7:].encode(), _hmac_hex(secret, body).encode()):
        raise SignatureRejected("X-Hub-Signature-256 does not match the body and secret")
    return value


def verify_stripe(
    secret: str, headers: Mapping[str, str], body: bytes, now: float, tolerance: float
) -> str:
    """``Stripe-Signature: t=<unix>,v1=<hex HMAC of 't.body'>[,v1=...]``; returns the timestamp."""
    value = _header(headers, "Stripe-Signature")
    timestamp = ""
    candidates = []
    for item in value.split(","):
        key, _, val = item.strip().partition("=")
        if key == "t":
            timestamp = val
        elif key == "v1":
            candidates.append(val)
    if not timestamp or not candidates:
        raise SignatureRejected("Stripe-Signature must hold t=<timestamp> and v1=<signature>")
    _check_age(timestamp, now, tolerance, "Stripe-Signature")
    expected = _hmac_hex(secret, timestamp.encode() + b"." + body).encode()
    if not any(hmac.compare_digest(c.encode(), expected) for c in candidates):
        raise SignatureRejected("no v1 signature in Stripe-Signature matches the body and secret")
    return timestamp


def verify_slack(
    secret: str, headers: Mapping[str, str], body: bytes, now: float, tolerance: float
) -> str:
    """``X-Slack-Signature: v0=<hex HMAC of 'v0:<timestamp>:<body>'>`` with the timestamp header;
    returns the timestamp."""
    timestamp = _header(headers, "X-Slack-Request-Timestamp")
    value = _header(headers, "X-Slack-Signature")
    _check_age(timestamp, now, tolerance, "X-Slack-Request-Timestamp")
    if not value.startswith("v0="):
        raise SignatureRejected("X-Slack-Signature must start with 'v0='")
    expected = _hmac_hex(secret, b"v0:" + timestamp.encode() + b":" + body)
    if not hmac.compare_digest(value[3:].encode(), expected.encode()):
        raise SignatureRejected("X-Slack-Signature does not match the body and secret")
    return timestamp


def verify_hmac(secret: str, headers: Mapping[str, str], body: bytes, header: str) -> str:
    """``<header>: <hex HMAC-SHA256 of the body>`` (a ``sha256=`` prefix is accepted)."""
    value = _header(headers, header)
    digest = value.removeprefix("sha256=")
    if not hmac.compare_digest(digest.lower().encode(), _hmac_hex(secret, body).encode()):
        raise SignatureRejected(f"{header} does not match the body and secret")
    return value


def content_id(slug: str, body: bytes) -> str:
    """An event id derived from a signed delivery's content (when the provider sent none)."""
    return "sha256-" + hashlib.sha256(slug.encode() + b"\x00" + body).hexdigest()[:40]
