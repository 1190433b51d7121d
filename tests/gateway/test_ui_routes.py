"""Every UI route names a handler that exists."""

from __future__ import annotations

from gateway.ui import ROUTES, handler


def test_every_route_names_an_existing_handler() -> None:
    for _, _, target in ROUTES:
        assert callable(handler(target)), target
