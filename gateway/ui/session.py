"""Who is looking at the UI, and whether a form really comes from one of its pages.

With auth on, the login page takes an API key once and keeps it in an ``HttpOnly``,
``SameSite=Strict`` cookie scoped to ``/ui``; every page checks it through the same
authenticator as the REST API (so a revoked key logs the browser out). Actions need
the ``write`` scope: a read-only key sees no action buttons and the server refuses
the action anyway. Every action carries a CSRF token that must equal the value of a
second ``SameSite=Strict`` cookie (double submit), so another site cannot forge one.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass
from urllib.parse import quote, urlsplit, urlunsplit

from aiohttp import web

from gateway.auth import ANONYMOUS, Principal, Scope, grants
from gateway.context import gateway_of
from gateway.problems import Problem

SESSION_COOKIE = "flowbus_session"
CSRF_COOKIE = "flowbus_csrf"
CSRF_FIELD = "csrf"
CSRF_HEADER = "X-CSRF-Token"
SESSION_SECONDS = 12 * 3600
_MAX_KEY_CHARS = 512


@dataclass(frozen=True, slots=True)
class Viewer:
    """The principal behind a UI request and the CSRF token its forms carry."""

    principal: Principal
    csrf: str
    auth: bool

    @property
    def can_write(self) -> bool:
        return grants(self.principal.scopes, Scope.WRITE)

    @property
    def can_admin(self) -> bool:
        return grants(self.principal.scopes, Scope.ADMIN)


class LoginRequired(Exception):
    """The request has no valid session: send the browser to the login page."""


def _cookie_flags(request: web.Request) -> dict[str, object]:
    return {"httponly": True, "samesite": "Strict", "path": "/ui", "secure": request.secure}


async def viewer_of(request: web.Request) -> Viewer:
    """The viewer, or :class:`LoginRequired` when auth is on and no valid key is held."""
    gateway = gateway_of(request)
    csrf = request.cookies.get(CSRF_COOKIE) or ""
    if not gateway.settings.auth:
        return Viewer(ANONYMOUS, csrf, auth=False)
    token = request.cookies.get(SESSION_COOKIE, "")
    if not token or len(token) > _MAX_KEY_CHARS:
        raise LoginRequired
    try:
        principal = await gateway.auth.require({"Authorization": f"Bearer {token}"}, Scope.READ)
    except Problem as exc:
        if exc.status == 401:
            raise LoginRequired from None
        raise
    return Viewer(principal, csrf, auth=True)


def ensure_csrf(request: web.Request, response: web.StreamResponse, viewer: Viewer) -> None:
    """Give a browser without a CSRF cookie the one its page's forms were rendered with."""
    if not request.cookies.get(CSRF_COOKIE) and viewer.csrf:
        response.set_cookie(CSRF_COOKIE, viewer.csrf, max_age=SESSION_SECONDS,
                            **_cookie_flags(request))  # type: ignore[arg-type]


def with_csrf(viewer: Viewer) -> Viewer:
    """The viewer with a fresh CSRF token when its browser has none yet."""
    if viewer.csrf:
        return viewer
    return Viewer(viewer.principal, secrets.token_urlsafe(24), viewer.auth)


async def check_action(request: web.Request, viewer: Viewer, form_token: str | None,
                       scope: Scope = Scope.WRITE) -> None:
    """403 unless the viewer holds ``scope`` and the CSRF token matches its cookie."""
    if not grants(viewer.principal.scopes, scope):
        if scope == Scope.WRITE:
            raise Problem(403, "this API key is read-only: it cannot act on runs or deployments")
        raise Problem(403, f"this needs an API key with the {scope.value} scope")
    cookie = request.cookies.get(CSRF_COOKIE, "")
    sent = request.headers.get(CSRF_HEADER) or form_token or ""
    if not cookie or not hmac.compare_digest(cookie.encode(), sent.encode()):
        raise Problem(403, "the form's CSRF token is missing or does not match; reload the page")


async def login(request: web.Request, api_key: str) -> Principal | None:
    """The principal of ``api_key`` when it is valid and may read, else None."""
    key = api_key.strip()
    if not key or len(key) > _MAX_KEY_CHARS:
        return None
    gateway = gateway_of(request)
    try:
        return await gateway.auth.require({"Authorization": f"Bearer {key}"}, Scope.READ)
    except Problem as exc:
        if exc.status in (401, 403):
            return None
        raise


def start_session(request: web.Request, response: web.StreamResponse, api_key: str) -> None:
    response.set_cookie(SESSION_COOKIE, api_key.strip(), max_age=SESSION_SECONDS,
                        **_cookie_flags(request))  # type: ignore[arg-type]
    response.set_cookie(CSRF_COOKIE, secrets.token_urlsafe(24), max_age=SESSION_SECONDS,
                        **_cookie_flags(request))  # type: ignore[arg-type]


def end_session(response: web.StreamResponse) -> None:
    response.del_cookie(SESSION_COOKIE, path="/ui")
    response.del_cookie(CSRF_COOKIE, path="/ui")


def login_redirect(request: web.Request) -> web.HTTPFound | Problem:
    """Where a request without a valid session goes: the login page, back here after.

    A page load is redirected (302). An htmx request (``HX-Request``) or a live stream
    (``Accept: text/event-stream``) would follow a redirect inside the page and swap the
    login form into a table, or keep reconnecting: it gets 401 with ``HX-Redirect`` to
    the login page instead, which htmx turns into a navigation of the whole page, with
    the page the browser shows (``HX-Current-URL``, else the dashboard) as where to return.
    """
    partial = request.headers.get("HX-Request") == "true"
    if partial or "text/event-stream" in request.headers.get("Accept", ""):
        shown = urlsplit(request.headers.get("HX-Current-URL", ""))
        target = safe_next(urlunsplit(("", "", shown.path, shown.query, "")))
        login_url = f"/ui/login?next={quote(target, safe='')}"
        return Problem(401, f"no valid session (expired or logged out): log in at {login_url}",
                       headers={"HX-Redirect": login_url, "Cache-Control": "no-store"})
    target = request.path_qs if request.path_qs.startswith("/ui") else "/ui"
    return web.HTTPFound(f"/ui/login?next={quote(target, safe='')}")


def safe_next(value: str | None) -> str:
    """Only a path inside the UI may be a post-login target (no open redirect)."""
    if value and value.startswith("/ui") and not value.startswith("//") and "\\" not in value:
        return value
    return "/ui"
