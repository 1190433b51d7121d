"""Playwright on Debian's Chromium (never a downloaded browser), logged in to the UI."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from playwright.sync_api import Browser, Page, sync_playwright

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
AXE = Path(__file__).resolve().parents[2] / "gateway/ui/static/vendor/axe.min.js"


@dataclass
class Console:
    """Errors the page reported: console errors and uncaught exceptions."""

    errors: list[str] = field(default_factory=list)


@contextmanager
def chromium() -> Iterator[Browser]:
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            yield browser
        finally:
            browser.close()


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
