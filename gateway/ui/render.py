"""Templates and static files of the UI: one Jinja2 environment, content-hashed static URLs.

Static files are served under ``/ui/static/<hash>/<name>`` with a year-long immutable
cache: a changed file gets a new hash, hence a new URL, so no browser keeps an old one.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

import jinja2
from aiohttp import web

from gateway.ui.run_history import markdown_text, safe_link, table_of

HERE = Path(__file__).parent
STATIC = HERE / "static"
_MEDIA = {".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml",
          ".png": "image/png", ".txt": "text/plain"}
_YEAR = 365 * 24 * 3600


@cache
def static_hashes() -> dict[str, str]:
    """name (relative to static/) -> short content hash, for every servable file."""
    found: dict[str, str] = {}
    for path in sorted(STATIC.rglob("*")):
        if path.is_file() and path.suffix in _MEDIA:
            found[path.relative_to(STATIC).as_posix()] = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
    return found


def static_url(name: str) -> str:
    """The cache-busting URL of a static file (a missing file is a template bug: KeyError)."""
    return f"/ui/static/{static_hashes()[name]}/{name}"


async def serve_static(request: web.Request) -> web.StreamResponse:
    """A static file, if the hash in its URL is the current one."""
    name = request.match_info["name"]
    if static_hashes().get(name) != request.match_info["digest"]:
        raise web.HTTPNotFound(text="no such static file (or an outdated version of it)")
    path = STATIC / name
    return web.Response(
        body=path.read_bytes(), content_type=_MEDIA[path.suffix],
        headers={"Cache-Control": f"public, max-age={_YEAR}, immutable"},
    )


def _ago(value: datetime | None) -> str:
    if value is None:
        return "-"
    seconds = (datetime.now(UTC) - value).total_seconds()
    if seconds < 0:
        return "in " + _span(-seconds)
    return _span(seconds) + " ago"


def _span(seconds: float) -> str:
    if seconds < 60:
        return f"{int(seconds)}s"
    if seconds < 3600:
        return f"{int(seconds // 60)}m"
    if seconds < 86400:
        return f"{int(seconds // 3600)}h"
    return f"{int(seconds // 86400)}d"


def _duration(start: datetime | None, end: datetime | None) -> str:
    if start is None:
        return "-"
    seconds = ((end or datetime.now(UTC)) - start).total_seconds()
    return f"{seconds:.2f}s" if seconds < 60 else _span(seconds)


def _stamp(value: datetime | None) -> str:
    return "-" if value is None else value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _pretty(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True, default=str)


@cache
def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True, undefined=jinja2.StrictUndefined,
        trim_blocks=True, lstrip_blocks=True,
        # The templates ship with the package: no stat of each file (and of each include
        # in a table's loop) on every render to see whether it changed.
        auto_reload=False,
    )
    env.globals.update(static=static_url, table_of=table_of, safe_link=safe_link)
    env.filters.update(ago=_ago, stamp=_stamp, pretty=_pretty, duration=_duration,
                       markdown=markdown_text)
    return env


def render(name: str, status: int = 200, headers: dict[str, str] | None = None,
           **context: Any) -> web.Response:
    """An HTML response from template ``name``."""
    html = environment().get_template(name).render(**context)
    return web.Response(
        text=html, status=status, content_type="text/html", charset="utf-8",
        headers={"Cache-Control": "no-store", **(headers or {})},
    )
