"""What a webhook's slug, verifier name and owner-given secret must look like.

Shared by the gateway (which checks it at the door of ``/api/v1/webhooks``) and the
``flowbus`` CLI (which checks it before anything is sent, e.g. when ``flowbus deploy``
reads it from an environment variable). Providers make secrets of this shape: GitHub's
are chosen by the user, Stripe's start with ``whsec_``, Slack's signing secrets are 32
hex digits.
"""

from __future__ import annotations

import re

SLUG_PATTERN = r"^[a-z0-9][a-z0-9-]{0,62}$"
VERIFIER_NAMES = ("none", "github", "stripe", "slack", "hmac")
SECRET_MIN_LENGTH = 16
SECRET_MAX_LENGTH = 512
# Printable ASCII without spaces: what a header-signing secret can be typed and pasted as.
_SHAPE = re.compile(r"^[!-~]+$")


def secret_problem(value: str) -> str | None:
    """Why ``value`` cannot be a webhook secret (never quoting it), or None when it can."""
    if len(value) < SECRET_MIN_LENGTH:
        return (f"is {len(value)} characters long; a webhook secret needs at least "
                f"{SECRET_MIN_LENGTH}")
    if len(value) > SECRET_MAX_LENGTH:
        return f"is over {SECRET_MAX_LENGTH} characters"
    if not _SHAPE.match(value):
        return "must be printable ASCII without spaces or line breaks"
    return None
