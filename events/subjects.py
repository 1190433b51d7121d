"""Event types as NATS subjects.

An event's ``type`` (``com.github.push``) becomes the subject
``<namespace>.events.<type>`` so NATS itself filters by name and wildcard. Type
patterns use ``*`` the way Prefect's ``expect`` does: it matches any run of
characters, dots included. :func:`filter_subject` gives the narrowest NATS filter
that still contains every match, and :func:`type_matches` is the exact test.
"""

from __future__ import annotations

import re
from functools import lru_cache

from events.errors import InvalidEvent

MAX_TYPE_LENGTH = 255
# A subject token may hold any printable character but the separators and wildcards.
_TOKEN = r"[^\s.*>\x00-\x1f\x7f]+"
_TYPE_RE = re.compile(rf"{_TOKEN}(?:\.{_TOKEN})*")
_NAMESPACE_RE = re.compile(r"[a-z][a-z0-9_-]{0,31}")


def check_type(event_type: str) -> str:
    """Return ``event_type`` if it can be a subject, else raise :class:`InvalidEvent`."""
    if not event_type:
        raise InvalidEvent("type", "must not be empty")
    if len(event_type) > MAX_TYPE_LENGTH:
        raise InvalidEvent("type", f"is {len(event_type)} characters, over {MAX_TYPE_LENGTH}")
    if _TYPE_RE.fullmatch(event_type) is None:
        raise InvalidEvent(
            "type",
            f"{event_type!r} is not a valid event name: use dot-separated words with no "
            "empty parts, whitespace, control characters, '*' or '>'",
        )
    return event_type


# The control plane's reserved namespace: only flowbus's own parts publish these types
# (run requests, flow-run states, automation and deployment events). They travel on
# ``<namespace>.events.flowbus.>``, which outside ingest (the gateway's /events and
# webhooks, sources) never publishes to, and which the bundled NATS's permissions
# can deny to everything but flowbus's own parts.
CONTROL_PREFIX = "flowbus."


def is_control_type(event_type: str) -> bool:
    """Whether ``event_type`` is in the control plane's reserved ``flowbus.`` namespace."""
    return event_type.startswith(CONTROL_PREFIX) or event_type == CONTROL_PREFIX[:-1]


def check_outside_type(event_type: str) -> str:
    """``event_type`` if an outside sender may use it; :class:`InvalidEvent` for a reserved one."""
    if is_control_type(event_type):
        raise InvalidEvent(
            "type",
            f"{event_type[:100]!r} is in the reserved {CONTROL_PREFIX!r} namespace: only "
            "flowbus's own parts publish those events; use a type of your own, e.g. com.example.*",
        )
    return event_type


def control_subject(namespace: str) -> str:
    """The NATS filter of every control-plane event subject."""
    return f"{namespace}.events.{CONTROL_PREFIX}>"


def on_own_subject(namespace: str, subject: str, event_type: str) -> bool:
    """Whether a message on ``subject`` carries an event of ``event_type`` where it belongs.

    A control-plane event counts only on its own subject: a body claiming to be
    ``flowbus.deployment.run-requested`` published on ``<ns>.events.com.example`` is
    a forgery by whoever could publish there.
    """
    return subject == event_subject(namespace, event_type)


def check_namespace(namespace: str) -> str:
    """Return ``namespace`` if it is usable in subjects, stream and bucket names."""
    if _NAMESPACE_RE.fullmatch(namespace) is None:
        raise ValueError(
            f"namespace {namespace!r} must start with a lowercase letter and hold at most "
            "32 lowercase letters, digits, '-' or '_'"
        )
    return namespace


def event_subject(namespace: str, event_type: str) -> str:
    """The subject an event of ``event_type`` is published on."""
    return f"{namespace}.events.{event_type}"


def event_type_of(namespace: str, subject: str) -> str:
    """The event type carried by an events subject (inverse of :func:`event_subject`)."""
    prefix = f"{namespace}.events."
    if not subject.startswith(prefix):
        raise ValueError(f"subject {subject!r} is not under {prefix!r}")
    return subject[len(prefix) :]


def check_pattern(pattern: str) -> str:
    """Validate a type pattern: like a type, but ``*`` may stand anywhere in a token."""
    if pattern == "*":
        return pattern
    check_type(pattern.replace("*", "x"))
    return pattern


def filter_subject(namespace: str, pattern: str) -> str:
    """The narrowest NATS filter subject containing every type ``pattern`` matches.

    Exact names map to themselves. A pattern whose ``*`` fills a whole last token maps
    to ``>``; otherwise everything from the first token holding ``*`` on becomes ``>``
    (a superset, since ``*`` in a pattern also spans dots), and the caller refines
    with :func:`type_matches`.

    >>> filter_subject("flowbus", "com.github.*")
    'flowbus.events.com.github.>'
    """
    check_pattern(pattern)
    tokens = pattern.split(".")
    kept: list[str] = []
    for token in tokens:
        if "*" in token:
            kept.append(">")
            break
        kept.append(token)
    return f"{namespace}.events." + ".".join(kept)


def is_exact(pattern: str) -> bool:
    """Whether ``pattern`` names one type (no wildcard)."""
    return "*" not in pattern


@lru_cache(maxsize=4096)
def _compiled(pattern: str) -> re.Pattern[str]:
    return re.compile(".*".join(re.escape(part) for part in pattern.split("*")), re.DOTALL)


def type_matches(pattern: str, event_type: str) -> bool:
    """Whether ``event_type`` matches ``pattern`` (``*`` matches any characters)."""
    if "*" not in pattern:
        return pattern == event_type
    return _compiled(pattern).fullmatch(event_type) is not None


def inbox_prefix(user: str | None) -> str:
    """The reply-subject prefix of a NATS connection made as ``user``.

    Each user gets its own (``_INBOX_<user>``), so the permissions can let a part
    receive only its own replies (JetStream API answers, deliveries to its ordered
    readers, control-request answers); without a user it is NATS's default.

    >>> inbox_prefix("gateway"), inbox_prefix("a.b c"), inbox_prefix(None)
    ('_INBOX_gateway', '_INBOX_a_b_c', '_INBOX')
    """
    if not user:
        return "_INBOX"
    return "_INBOX_" + re.sub(r"[\s.*>\x00-\x1f\x7f]", "_", user)
