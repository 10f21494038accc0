"""The console in a real headless Chromium (Debian's, driven by Playwright): one browser per test module,
each page opened as make run prints its URL, every request it makes recorded."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from services.devstack import LocalStack
from services.gateway.routes import console as console_routes

SCREENS = Path(".data/screens")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# Flags that keep Chromium off the network and quiet on a machine without one.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


NEEDS_CHROMIUM = pytest.mark.skipif(
    CHROMIUM is None, reason="no Chromium on this machine (Debian: apt-get install chromium)"
)


@dataclass
class Console:
    """One console tab on a stack, with what it asked for and what it complained about."""

    page: Any
    stack: LocalStack
    requests: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def goto(self, path: str) -> None:
        self.page.goto(f"{self.stack.url}/#/{path}")

    def shoot(self, name: str, **options: Any) -> Path:
        SCREENS.mkdir(parents=True, exist_ok=True)
        path = SCREENS / f"{name}.png"
        self.page.screenshot(path=str(path), **options)
        return path

    def on_message(self, message: Any) -> None:
        if message.type == "error":
            self.problems.append(message.text)

    def assert_clean(self) -> None:
        """Every request stayed on 127.0.0.1 (the console is self-contained: no CDN, no font service),
        and the page logged no error (a CSP refusal is one)."""
        assert self.requests, "no request recorded"
        assert [u for u in self.requests if urlsplit(u).hostname != "127.0.0.1"] == []
        assert self.problems == []


# Per module, not per session: while Playwright's sync API runs, its event loop is the thread's running
# loop, and every asyncio test after the browser tests would fail to start its own.
@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not (console_routes.DIST / "index.html").is_file():
        pytest.fail("the console is not built: run `make console` (make test does)")
    playwright = pytest.importorskip("playwright.sync_api")
    with playwright.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@contextmanager
def open_console(browser: Any, stack: LocalStack, **context_options: Any) -> Iterator[Console]:
    """A fresh profile (empty local storage) opening the console with the key in its fragment."""
    context = browser.new_context(**{"viewport": {"width": 1280, "height": 800}, **context_options})
    page = context.new_page()
    page.set_default_timeout(90_000)  # a busy 2-core machine runs the whole stack beside the browser
    console = Console(page, stack)
    context.on("request", lambda request: console.requests.append(request.url))
    page.on("console", console.on_message)
    page.on("pageerror", lambda exc: console.problems.append(str(exc)))
    page.goto(f"{stack.url}/#key={stack.api_key}")
    try:
        yield console
    finally:
        context.close()


@pytest.fixture
def console(browser: Any, running_stack: LocalStack) -> Iterator[Console]:
    with open_console(browser, running_stack) as opened:
        yield opened


@pytest.fixture
def media_console(browser: Any, media_stack: LocalStack) -> Iterator[Console]:
    with open_console(browser, media_stack) as opened:
        yield opened
