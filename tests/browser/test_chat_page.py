"""The chat page in a real headless Chromium: type a message, see a streamed answer appear."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from services.devstack import LocalStack

SHOTS = Path(".data/test-artifacts")
SHOTS.mkdir(parents=True, exist_ok=True)
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(CHROMIUM is None, reason="no Chromium on this machine (Debian: apt-get install chromium)"),
]
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


@contextmanager
def _page(stack: LocalStack) -> Iterator[Any]:
    """The stack's page in headless Chromium, opened with the key in its fragment as make run prints it."""
    playwright = pytest.importorskip("playwright.sync_api")
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.set_default_timeout(90_000)  # a busy 2-core machine runs the whole stack beside the browser
            page.goto(f"{stack.url}/#key={stack.api_key}")
            yield page
        finally:
            browser.close()


def test_chat_page_streams_an_answer(running_stack: LocalStack) -> None:
    with _page(running_stack) as page:
        page.wait_for_selector("#model option[value='tiny-llama']", state="attached")
        page.select_option("#model", "tiny-llama")
        page.fill("#prompt", "Hello from a browser")
        page.click("#send")
        # Done when the page reports its chunk count, or shows an error (asserted on below).
        page.wait_for_function(
            "document.getElementById('status').textContent.includes('chunks')"
            " || document.querySelector('#log .error') !== null"
        )
        texts = {
            cls: [e.text_content() for e in page.query_selector_all(f"#log .{cls}")]
            for cls in ("user", "assistant", "error")
        }
        status = page.text_content("#status") or ""
        page.screenshot(path=str(SHOTS / "chat.png"))
    assert texts["error"] == [], f"the page showed an error: {texts['error']}"
    assert texts["user"] == ["you: Hello from a browser"]
    [answer] = texts["assistant"]
    assert answer is not None and answer.startswith("model: ") and len(answer) > len("model: ")
    # Chunks are counted as they stream; how many depends on speed (deltas coalesce when the loop is busy).
    assert int(status.split()[0]) >= 1


def test_page_makes_an_image_with_a_progress_bar(media_stack: LocalStack) -> None:
    with _page(media_stack) as page:
        page.wait_for_selector("#media-model option[value='tiny-sd']", state="attached")
        page.fill("#media-prompt", "a lighthouse at dusk")
        page.click("#make")
        page.wait_for_function(
            "document.getElementById('media-status').textContent.includes('stop')"
            " || document.querySelector('#media-status.error') !== null"
        )
        status = page.text_content("#media-status") or ""
        progress = page.eval_on_selector("#progress", "e => e.value")
        page.wait_for_function(
            "(() => { const i = document.querySelector('#made img');"
            " return i !== null && i.complete && i.naturalWidth > 0; })()"
        )
        size = page.eval_on_selector("#made img", "e => e.complete && [e.naturalWidth, e.naturalHeight]")
        page.select_option("#kind", "speech")
        page.wait_for_selector("#media-model option[value='espeak']", state="attached")
        page.fill("#media-prompt", "Hello from the page")
        page.click("#make")
        page.wait_for_selector("#made audio")
        audio_type = page.eval_on_selector("#made figcaption", "e => e.textContent")
        page.screenshot(path=str(SHOTS / "media.png"), full_page=True)
    assert "image stop" in status and progress == 1
    assert size == [256, 256]  # the image loaded from its signed URL, at the size asked
    assert "audio/wav" in (audio_type or "")
