"""The console page by page in Chromium against a real stack: live fleet data pushed over SSE, history,
the catalog, a streamed chat whose copied code runs, drain and resume from the page (checked through the
API), images and speech with progress, phone width in dark mode; nothing leaves 127.0.0.1."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from typing import Any

import httpx
import numpy as np
import pytest

from services.devstack import LocalStack
from tests.browser.conftest import NEEDS_CHROMIUM, Console, open_console

pytestmark = [pytest.mark.e2e, NEEDS_CHROMIUM]


def api(stack: LocalStack, method: str, path: str, **kwargs: Any) -> httpx.Response:
    return httpx.request(method, stack.url + path, headers=stack.headers, timeout=60, **kwargs)


def wait_js(page: Any, expression: str, timeout_s: float = 90) -> None:
    """Until `expression` is true in the page. (Playwright's wait_for_function evaluates its string with
    eval, which the console's CSP forbids; page.evaluate goes through the debugger, which it does not.)"""
    until(lambda: page.evaluate(expression), expression, timeout_s)


def until(check: Any, what: str, timeout_s: float = 30) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if value := check():
            return value
        time.sleep(0.2)
    pytest.fail(f"timed out waiting for {what}")


def test_fleet_page_shows_the_stack_live(console: Console) -> None:
    snapshot = api(console.stack, "GET", "/v1/console/fleet").json()
    page = console.page
    [node] = [n["node"] for n in snapshot["nodes"]]
    workers = sorted(w["worker_id"] for w in snapshot["workers"])
    card = f".node[data-node='{node}']"
    page.wait_for_selector(f"{card} .state.online")
    page.wait_for_selector(f"{card} canvas")  # its chart drawn
    wait_js(page, "document.getElementById('link').textContent === 'live'")
    assert re.fullmatch(r"\d+%.*", page.text_content(f"{card} .cpu") or "")
    assert page.locator(".node-class[data-class='cpu'] .node").count() == 1  # this VM has no GPU
    shown = sorted(page.eval_on_selector_all("#workers tr[data-worker]", "rows => rows.map(r => r.dataset.worker)"))
    assert shown == workers
    # Live means pushed: over 4 s the heartbeat stays fresh, and the page asks for nothing meanwhile.
    before = len(console.requests)
    ages = []
    for _ in range(4):
        time.sleep(1)
        ages.append(page.text_content(f"{card} .heartbeat"))
    assert all(re.fullmatch(r"[0-2] s ago", a or "") for a in ages), ages
    assert [u for u in console.requests[before:] if "/v1/alerts" not in u] == []  # alerts: fetched on an alert event
    # History over a chosen range, read back from the TELEMETRY stream.
    with page.expect_response(lambda r: "/v1/console/history?range_s=3600" in r.url) as reply:
        page.click("button:has-text('1 h')")
    history = reply.value.json()
    [samples] = [n["samples"] for n in history["nodes"] if n["node"] == node]
    stamps = [s["ts_ms"] for s in samples]
    assert stamps and stamps == sorted(stamps) and stamps[0] >= history["end_ms"] - 3600 * 1000
    assert page.get_attribute("button:has-text('1 h')", "aria-pressed") == "true"
    console.shoot("fleet")
    console.assert_clean()


def test_the_page_is_keyboard_reachable(console: Console) -> None:
    page = console.page
    page.wait_for_selector("#workers button.drain")
    for _ in range(40):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.matches('#workers button.drain')"):
            break
    else:
        pytest.fail("Tab never reached a worker's drain button")
    page.keyboard.press("Shift+Tab")
    assert page.evaluate("document.activeElement.closest('#workers, .range, header') !== null")
    console.assert_clean()


def test_models_page_shows_the_catalog(console: Console) -> None:
    catalog = {m["id"]: m for m in api(console.stack, "GET", "/v1/admin/models").json()["data"]}
    console.goto("models")
    page = console.page
    row = "#models tr[data-model='tiny-llama']"
    page.wait_for_selector(f"{row} .state.running")
    replicas = page.eval_on_selector_all(f"{row} .chip", "cs => cs.map(c => c.textContent)")
    assert replicas == [f"{r['worker']}@{r['node']} · {r['state']}" for r in catalog["tiny-llama"]["replicas"]]
    assert page.eval_on_selector_all("#models tr[data-model]", "rows => rows.map(r => r.dataset.model)") == sorted(
        catalog
    )
    # tiny-llama runs on its own worker, not placed by the scheduler: the page offers no load/unload.
    assert not catalog["tiny-llama"]["declared"] and page.is_disabled(f"{row} button.unload")
    console.shoot("models")
    console.assert_clean()


def test_chat_streams_and_its_code_runs_and_it_survives_a_reload(console: Console) -> None:
    console.goto("chat")
    page = console.page
    page.wait_for_selector("#chat-model option[value='tiny-llama']", state="attached")
    page.select_option("#chat-model", "tiny-llama")
    page.fill("#prompt", "Hello from a browser")
    with page.expect_response(lambda r: r.url.endswith("/v1/chat/completions")) as reply:
        page.click("#send")
    assert reply.value.headers["content-type"].startswith("text/event-stream")
    wait_js(
        page,
        "document.getElementById('chat-status').textContent.includes('chunks in')"
        " || document.querySelector('#chat-log .msg.error') !== null",
    )
    assert page.query_selector_all("#chat-log .msg.error") == []
    status = page.text_content("#chat-status") or ""
    assert int(status.split()[0]) >= 1 and "tokens" in status
    users = page.eval_on_selector_all("#chat-log .msg.user", "ms => ms.map(m => m.textContent)")
    [answer] = page.eval_on_selector_all("#chat-log .msg.assistant", "ms => ms.map(m => m.textContent)")
    assert users == ["Hello from a browser"] and answer
    curl = page.text_content("#snippet-curl") or ""
    python = page.text_content("#snippet-python") or ""
    assert console.stack.api_key not in curl + python  # the key stays in the environment
    console.shoot("chat")
    # The copied code is the exact request: both run against the stack and stream an answer.
    env = {**os.environ, "MODALMESH_API_KEY": console.stack.api_key}
    ran = subprocess.run(["bash", "-c", curl], capture_output=True, text=True, env=env, timeout=60)
    assert ran.returncode == 0 and '"delta"' in ran.stdout and "[DONE]" in ran.stdout, ran.stderr
    ran = subprocess.run([sys.executable, "-c", python], capture_output=True, text=True, env=env, timeout=60)
    assert ran.returncode == 0 and ran.stdout.strip(), ran.stderr
    # Kept in this browser: a reload shows the same conversation.
    page.reload()
    page.wait_for_selector("#chat-log .msg.assistant")
    assert page.eval_on_selector_all("#chat-log .msg", "ms => ms.map(m => m.textContent)") == [
        "Hello from a browser",
        answer,
    ]
    console.assert_clean()


def test_draining_a_worker_from_the_page_stops_new_work_reaching_it(console: Console) -> None:
    stack = console.stack
    page = console.page
    [worker] = [w for w in api(stack, "GET", "/v1/workers").json()["data"] if "tiny-llama" in w["models"]]
    wid = worker["worker_id"]
    row = f"#workers tr[data-worker='{wid}']"
    try:
        page.click(f"{row} button.drain")
        until(lambda: state_of(stack, wid) == "draining", f"{wid} to drain")
        page.wait_for_selector(f"{row} button.resume")
        page.wait_for_selector(f".node[data-node='{worker['node']}'] .state.draining")
        console.shoot("fleet-draining")
        # Its only worker drains: a new request for its model is refused, not queued behind it.
        res = chat(stack)
        assert res.status_code == 503 and res.json()["error"]["code"] == "no_live_worker"
        page.click(f"{row} button.resume")
        until(lambda: state_of(stack, wid) == "ready", f"{wid} to resume")
        page.wait_for_selector(f"{row} button.drain")
        res = chat(stack)
        assert res.status_code == 200
    finally:  # the stack is shared: leave the worker as it was
        api(stack, "POST", f"/v1/admin/workers/{wid}/resume")
    console.assert_clean()


def chat(stack: LocalStack) -> httpx.Response:
    body = {"model": "tiny-llama", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
    return api(stack, "POST", "/v1/chat/completions", json=body)


def state_of(stack: LocalStack, worker_id: str) -> str | None:
    workers = {w["worker_id"]: w for w in api(stack, "GET", "/v1/workers").json()["data"]}
    return workers[worker_id]["state"] if worker_id in workers else None


def test_requests_page_finds_a_request_and_opens_its_result(console: Console) -> None:
    answer = chat(console.stack).json()
    rid, text = answer["id"], answer["choices"][0]["message"]["content"]
    console.goto("requests")
    page = console.page
    page.wait_for_selector("#requests tbody tr")
    page.fill("#request-search", rid)
    row = f"#requests tr[data-request='{rid}']"
    page.wait_for_selector(row)
    assert page.locator("#requests tbody tr").count() == 1  # the search leaves only it
    cells = page.eval_on_selector_all(f"{row} td", "cs => cs.map(c => c.textContent)")
    assert cells[3:5] == ["completed", "1"]
    page.click(f"{row} button")
    assert page.text_content("#request-detail .result-text") == text
    console.shoot("requests")
    console.assert_clean()


def test_alerts_badge_and_page(console: Console) -> None:
    alerts = api(console.stack, "GET", "/v1/alerts").json()
    page = console.page
    wait_js(page, "document.getElementById('alerts-badge').textContent !== '?'")
    assert page.text_content("#alerts-badge") == str(len(alerts["active"]))
    console.goto("alerts")
    page.wait_for_selector("h1:has-text('Alerts')")
    assert page.locator("#alerts-recent tbody tr").count() == min(len(alerts["recent"]), 200)
    console.shoot("alerts")
    console.assert_clean()


def test_media_page_makes_an_image_and_speech(media_console: Console) -> None:
    media_console.goto("media")
    page = media_console.page
    page.wait_for_selector("#media-model option[value='tiny-sd']", state="attached")
    page.select_option("#media-model", "tiny-sd")
    page.fill("#media-prompt", "a lighthouse at dusk")
    page.click("#make")
    wait_js(
        page,
        "document.getElementById('media-status').textContent.includes('stop')"
        " || document.querySelector('#media-status.error') !== null",
        timeout_s=240,  # twelve diffusion steps on a CPU the whole stack shares
    )
    assert "image stop" in (page.text_content("#media-status") or "")
    assert page.eval_on_selector("#media-progress", "e => e.value") == 1
    wait_js(
        page,
        "(() => { const i = document.querySelector('#made img'); return i && i.complete && i.naturalWidth > 0; })()",
    )
    assert page.eval_on_selector("#made img", "e => [e.naturalWidth, e.naturalHeight]") == [256, 256]
    page.select_option("#media-kind", "speech")
    page.wait_for_selector("#media-model option[value='espeak']", state="attached")
    page.select_option("#media-model", "espeak")
    page.fill("#media-prompt", "Hello from the page")
    page.click("#make")
    page.wait_for_selector("#made audio")
    assert "audio/wav" in (page.text_content("#made figure:first-child figcaption") or "")
    media_console.shoot("media", full_page=True)
    media_console.assert_clean()


def test_phone_width_in_dark_mode(browser: Any, running_stack: LocalStack) -> None:
    with open_console(
        browser, running_stack, viewport={"width": 390, "height": 844}, color_scheme="dark", is_mobile=True
    ) as console:
        page = console.page
        page.wait_for_selector(".node .state.online")
        # Dark follows the system: the page's background is dark, and nothing is wider than the phone.
        background = page.evaluate("getComputedStyle(document.body).backgroundColor")
        assert sum(map(int, re.findall(r"\d+", background)[:3])) < 3 * 64, background
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
        console.shoot("fleet-phone-dark", full_page=True)
        console.assert_clean()


def test_embeddings_page_shows_similarities_of_the_real_model(media_console: Console) -> None:
    media_console.goto("embeddings")
    page = media_console.page
    page.wait_for_selector("#embedding-model option[value='all-minilm-l6-v2']", state="attached")
    texts = ["A cat sits on the mat.", "A kitten is resting on a rug.", "The stock market fell sharply today."]
    page.fill("#embedding-texts", "\n".join(texts))
    page.click("#embed")
    page.wait_for_selector("#similarity td.sim")
    shown = page.eval_on_selector_all(
        "#similarity tbody tr", "rows => rows.map(r => [...r.querySelectorAll('td')].map(c => Number(c.dataset.sim)))"
    )
    # The same texts through the API, compared here: the page's matrix is theirs.
    vectors = np.array(
        [
            d["embedding"]
            for d in api(
                media_console.stack, "POST", "/v1/embeddings", json={"model": "all-minilm-l6-v2", "input": texts}
            ).json()["data"]
        ]
    )
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    assert np.allclose(shown, unit @ unit.T, atol=1e-3)
    assert shown[0][1] > shown[0][2]  # a real model: the cat is nearer the kitten than the stock market
    python = page.text_content("#embedding-python") or ""
    env = {**os.environ, "MODALMESH_API_KEY": media_console.stack.api_key}
    ran = subprocess.run([sys.executable, "-c", python], capture_output=True, text=True, env=env, timeout=60)
    assert ran.returncode == 0 and len(ran.stdout.splitlines()) == 3, ran.stderr
    media_console.shoot("embeddings")
    media_console.assert_clean()
