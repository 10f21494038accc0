"""The async task API on the running stack: queue, poll, follow events and resume them, cancel."""

from __future__ import annotations

import io
import json
import time
from typing import Any

import httpx
import pytest
from PIL import Image

from services.devstack import LocalStack

pytestmark = pytest.mark.e2e


def _events(stack: LocalStack, task_id: str, last_event_id: str | None = None) -> list[dict[str, Any]]:
    headers = {**stack.headers, **({"Last-Event-ID": last_event_id} if last_event_id else {})}
    events: list[dict[str, Any]] = []
    current: dict[str, Any] = {}
    with httpx.stream("GET", f"{stack.url}/v1/tasks/{task_id}/events", headers=headers, timeout=120) as res:
        assert res.status_code == 200
        for line in res.iter_lines():
            if not line:
                if "event" in current:
                    events.append(current)
                current = {}
                continue
            field, _, value = line.partition(": ")
            current[field] = json.loads(value) if field == "data" else value
    return events


def _submit(stack: LocalStack, body: dict[str, Any]) -> dict[str, Any]:
    res = httpx.post(f"{stack.url}/v1/tasks", json=body, headers=stack.headers, timeout=30)
    assert res.status_code == 202, res.text
    return res.json()  # type: ignore[no-any-return]


def _wait(stack: LocalStack, task_id: str, timeout_s: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        task = httpx.get(f"{stack.url}/v1/tasks/{task_id}", headers=stack.headers).json()
        if task["status"] in ("completed", "failed", "cancelled"):
            return task  # type: ignore[no-any-return]
        time.sleep(0.1)
    raise AssertionError(f"task {task_id} did not end")


def test_image_task_events_resume_and_result(media_stack: LocalStack) -> None:
    task = _submit(
        media_stack, {"modality": "image", "model": "tiny-sd", "prompt": "a fox", "size": "64x64", "steps": 6}
    )
    assert task["status"] == "queued" and task["id"]
    events = _events(media_stack, task["id"])
    kinds = [e["event"] for e in events]
    assert kinds[-1] == "final" and kinds.count("artifact") == 1
    fractions = [e["data"]["fraction"] for e in events if e["event"] == "progress"]
    # The start, the end, and at most one step in between per progress_every_s of the 6.
    assert fractions == sorted(fractions) and fractions[0] == 0.0 and fractions[-1] == 1.0 and len(fractions) <= 7
    ids = [int(e["id"]) for e in events]
    assert ids == list(range(len(ids)))
    resumed = _events(media_stack, task["id"], last_event_id=str(ids[-3]))
    assert [int(e["id"]) for e in resumed] == ids[-2:]  # exactly the rest, nothing twice
    done = _wait(media_stack, task["id"])
    assert done["status"] == "completed" and done["progress"] == 1.0
    [file] = done["result"]["files"]
    png = httpx.get(file["url"]).content
    assert Image.open(io.BytesIO(png)).size == (64, 64) and len(png) == file["bytes"]


def test_speech_and_embedding_tasks(media_stack: LocalStack) -> None:
    speech = _submit(media_stack, {"modality": "speech", "model": "espeak", "input": "A task that speaks."})
    embed = _submit(media_stack, {"modality": "embedding", "model": "all-minilm-l6-v2", "input": ["a", "b"]})
    spoken = _wait(media_stack, speech["id"])
    assert spoken["result"]["files"][0]["content_type"] == "audio/wav" and spoken["result"]["files"][0]["seconds"] > 0.5
    vectors = _wait(media_stack, embed["id"])["result"]["embeddings"]
    assert len(vectors) == 2 and len(vectors[0]) == 384


def test_cancel_running_and_queued_tasks(media_stack: LocalStack) -> None:
    slow = {"modality": "image", "model": "tiny-sd", "prompt": "slow", "size": "256x256", "steps": 200}
    running = _submit(media_stack, slow)
    queued = _submit(media_stack, slow)  # the image worker has one slot: this one waits
    deadline = time.monotonic() + 30
    while (
        httpx.get(f"{media_stack.url}/v1/tasks/{running['id']}", headers=media_stack.headers).json()["progress"] == 0
        and time.monotonic() < deadline
    ):
        time.sleep(0.1)
    for task in (queued, running):
        res = httpx.delete(f"{media_stack.url}/v1/tasks/{task['id']}", headers=media_stack.headers)
        assert res.status_code == 200
    ended = _wait(media_stack, running["id"], timeout_s=30)
    assert ended["status"] == "cancelled" and 0 < ended["progress"] < 1
    never = _wait(media_stack, queued["id"], timeout_s=30)
    assert never["status"] == "cancelled"
    assert [e["event"] for e in _events(media_stack, queued["id"])] == ["final"]  # it never started


def test_unknown_task_and_bad_task_body(media_stack: LocalStack) -> None:
    assert httpx.get(f"{media_stack.url}/v1/tasks/nope", headers=media_stack.headers).status_code == 404
    assert httpx.delete(f"{media_stack.url}/v1/tasks/nope", headers=media_stack.headers).status_code == 404
    bad = httpx.post(
        f"{media_stack.url}/v1/tasks", json={"modality": "hologram", "model": "x"}, headers=media_stack.headers
    )
    assert bad.status_code == 400 and bad.json()["error"]["message"]


def test_video_task_makes_an_mp4_with_the_asked_frame_count(media_stack: LocalStack, tmp_path: Any) -> None:
    import imageio_ffmpeg

    task = _submit(
        media_stack,
        {
            "modality": "video",
            "model": "tiny-video",
            "prompt": "waves",
            "frames": 13,
            "fps": 10,
            "size": "32x32",
            "steps": 2,
        },
    )
    events = _events(media_stack, task["id"])
    assert [e["event"] for e in events][-2:] == ["artifact", "final"]
    assert any(e["event"] == "progress" and "encoding" in e["data"]["message"] for e in events)
    done = _wait(media_stack, task["id"])
    [file] = done["result"]["files"]
    assert file["content_type"] == "video/mp4" and file["frames"] == 13
    path = tmp_path / "clip.mp4"
    path.write_bytes(httpx.get(file["url"]).content)
    frames, seconds = imageio_ffmpeg.count_frames_and_secs(str(path))
    assert frames == 13 and abs(seconds - 1.3) < 0.15
    bad = _submit(
        media_stack,
        {"modality": "video", "model": "tiny-video", "prompt": "x", "frames": 12, "size": "32x32", "steps": 1},
    )
    failed = _wait(media_stack, bad["id"])
    assert failed["status"] == "failed" and failed["error"]["code"] == "invalid_request"
