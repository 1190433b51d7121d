"""A final engine state as the runner records it: result document, failure message.

The result document is what ``events.deployments.read_result`` reads from the
results object store: ``{"serializer": "json", "value": ...}``, or cloudpickle
(base64) when the flow chose that serializer.
"""

from __future__ import annotations

import base64
import json
import traceback
from typing import Any

MAX_MESSAGE = 16 * 1024


def result_document(flow: Any, value: Any, max_bytes: int) -> tuple[bytes | None, str | None]:
    """(document bytes, None) or (None, why the result is not persisted)."""
    serializer = flow._serializer
    name = getattr(serializer, "name", "json")
    try:
        payload = serializer.dumps(value)
    except Exception as exc:
        return None, f"the result was not persisted: {exc}"
    if name == "json":
        document = b'{"serializer":"json","value":' + payload + b"}"
    else:
        document = json.dumps(
            {"serializer": name, "value": base64.b64encode(payload).decode("ascii")}
        ).encode()
    if len(document) > max_bytes:
        return None, (
            f"the result was not persisted: {len(document)} bytes serialized is more than "
            f"the runner's limit of {max_bytes} (FLOWBUS_RUNNER_RESULT_MAX_BYTES)"
        )
    return document, None


def failure_message(message: str | None, error: object) -> str:
    """The state message with the error's traceback appended, bounded in size."""
    text = message or ""
    if isinstance(error, BaseException):
        trace = "".join(traceback.format_exception(error))
        text = f"{text}\n{trace}" if text else trace
    if len(text) > MAX_MESSAGE:
        text = text[: MAX_MESSAGE // 2] + "\n...\n" + text[-MAX_MESSAGE // 2 :]
    return text
