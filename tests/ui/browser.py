"""Playwright on Debian's Chromium (never a downloaded browser), logged in to the UI."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from playwright.sync_api import Browser, Page, Playwright, sync_playwright

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
AXE = Path(__file__).resolve().parents[2] / "gateway/ui/static/vendor/axe.min.js"


@dataclass
class Console:
    """Errors the page reported: console errors and uncaught exceptions."""

    errors: list[str] = field(default_factory=list)


class SharedChromium:
    """One Chromium for a whole test module: launching one costs seconds on a loaded
    machine. Launched on first use; a browser that crashed is replaced."""

    def __init__(self) -> None:
        self._playwright: Playwright | None = None
        self._browser: Browser | None = None

    def get(self) -> Browser:
        if self._browser is None or not self._browser.is_connected():
            if self._playwright is None:
                self._playwright = sync_playwright().start()
            self._browser = _launch(self._playwright)
        return self._browser

    def close(self) -> None:
        try:
            if self._browser is not None and self._browser.is_connected():
                self._browser.close()
        finally:
            if self._playwright is not None:
                self._playwright.stop()
            self._browser = self._playwright = None


_shared: list[SharedChromium] = []


@contextmanager
def shared_chromium() -> Iterator[SharedChromium]:
    """Within this block, ``chromium()`` hands out one browser instead of launching one."""
    shared = SharedChromium()
    _shared.append(shared)
    try:
        yield shared
    finally:
        _shared.remove(shared)
        shared.close()


def _launch(playwright: Playwright) -> Browser:
    return playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])


@contextmanager
def chromium() -> Iterator[Browser]:
    """A browser for one test: the shared one when a ``shared_chromium()`` block is open,
    else one of its own. Every context (cookies, storage, pages) opened in the block is
    closed at its end, so nothing of one test reaches the next."""
    if not _shared:
        with sync_playwright() as p:
            browser = _launch(p)
            try:
                yield browser
            finally:
                browser.close()
        return
    browser = _shared[-1].get()
    before = set(browser.contexts)
    try:
        yield browser
    finally:
        for context in browser.contexts:
            if context not in before:
                context.close()


def open_page(browser: Browser, width: int = 1280, height: int = 800,
              scheme: str = "light") -> tuple[Page, Console]:
    context = browser.new_context(viewport={"width": width, "height": height},
                                  color_scheme=scheme)  # type: ignore[arg-type]
    context.set_default_timeout(30_000)
    page = context.new_page()
    console = Console()
    page.on("console", lambda m: console.errors.append(f"{m.text} at {m.location.get('url')}")
            if m.type == "error" else None)
    page.on("pageerror", lambda e: console.errors.append(str(e)))
    return page, console


def log_in(page: Page, url: str, key: str, path: str = "/ui") -> None:
    page.goto(url + path)
    page.fill("#api_key", key)
    page.click("button[type=submit]")
    page.wait_for_url(f"**{path}")


def serious_violations(page: Page) -> list[dict[str, Any]]:
    """axe-core (vendored) on the current page: violations of impact serious or critical."""
    page.add_script_tag(path=str(AXE))
    result = page.evaluate("async () => (await axe.run(document)).violations.map("
                           "v => ({id: v.id, impact: v.impact, nodes: v.nodes.map(n => n.html)}))")
    return [v for v in result if v["impact"] in ("serious", "critical")]
