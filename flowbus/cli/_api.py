"""The REST API client of the commands that manage what only the gateway stores
(webhooks, variables): ``FLOWBUS_API_URL`` / ``FLOWBUS_API_KEY``, else the gateway of a
running ``flowbus dev`` (``$FLOWBUS_HOME/dev/api.url``)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any


def dev_api_file() -> Path:
    home = Path(os.environ.get("FLOWBUS_HOME") or str(Path.home() / ".flowbus"))
    return home / "dev" / "api.url"


def api_client() -> Any:
    """An (unopened) :class:`flowbus.client.FlowbusClient`."""
    from flowbus.cli._common import check_settings
    from flowbus.client import FlowbusClient

    check_settings()
    url = None
    if not os.environ.get("FLOWBUS_API_URL"):
        try:
            found = dev_api_file().read_text().strip()
        except (OSError, UnicodeDecodeError):
            found = ""
        url = found if found.startswith(("http://", "https://")) else None
    return FlowbusClient(api_url=url)


def hooks_url(api_url: str, slug: str) -> str:
    """Where senders POST: the gateway's ``/hooks/<slug>`` next to its ``/api/v1``."""
    base = api_url.rstrip("/").removesuffix("/api/v1")
    return f"{base}/hooks/{slug}"
