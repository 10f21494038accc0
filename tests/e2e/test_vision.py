"""Chat with images: the tiny model sees through its vision projector (llama.cpp's multimodal
library), and bad images are 400s from the gateway."""

from __future__ import annotations

import base64
import io

import httpx
import openai
import pytest
from PIL import Image

from services.devstack import LocalStack
from services.workers.tiny_model import TinyVisionSpec

pytestmark = pytest.mark.e2e
MODEL = "tiny-llama"


def _data_url(color: tuple[int, int, int], size: tuple[int, int] = (48, 40)) -> str:
    out = io.BytesIO()
    Image.new("RGB", size, color).save(out, format="PNG")
    return "data:image/png;base64," + base64.b64encode(out.getvalue()).decode()


def _ask(client: openai.OpenAI, images: list[str]) -> openai.types.chat.ChatCompletion:
    content: list[dict[str, object]] = [{"type": "image_url", "image_url": {"url": url}} for url in images]
    content.append({"type": "text", "text": "What is in the picture?"})
    return client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": content}],  # type: ignore[list-item,misc]
        max_tokens=6,
        seed=3,
        temperature=0,
    )


def test_images_reach_the_model_as_image_tokens(running_stack: LocalStack) -> None:
    client = openai.OpenAI(base_url=f"{running_stack.url}/v1", api_key=running_stack.api_key, max_retries=0)
    text_only, one, two = (_ask(client, [_data_url((255, 0, 0))] * n) for n in (0, 1, 2))
    assert one.choices[0].message.content and text_only.usage and one.usage and two.usage
    # every image is the projector's patch embeddings in the prompt, and nothing else changes
    assert one.usage.prompt_tokens - text_only.usage.prompt_tokens == TinyVisionSpec().image_tokens
    assert two.usage.prompt_tokens - one.usage.prompt_tokens == TinyVisionSpec().image_tokens
    streamed = client.chat.completions.create(
        model=MODEL,
        stream=True,
        max_tokens=4,
        messages=[
            {
                "role": "user",
                "content": [  # type: ignore[list-item]
                    {"type": "image_url", "image_url": {"url": _data_url((0, 255, 0))}},
                    {"type": "text", "text": "hi"},
                ],
            }
        ],
    )
    assert "".join(c.choices[0].delta.content or "" for c in streamed if c.choices).strip()


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("data:image/png;base64,aGVsbG8=", "not a readable image"),
        ("data:image/png;base64,%%%", "base64"),
        ("https://example.com/cat.png", "data URL or a file"),
        (_data_url((1, 2, 3), (4000, 10)), "pixels a side"),
    ],
)
def test_bad_images_are_400(running_stack: LocalStack, url: str, message: str) -> None:
    body = {
        "model": MODEL,
        "messages": [
            {
                "role": "user",
                "content": [{"type": "text", "text": "hi"}, {"type": "image_url", "image_url": {"url": url}}],
            }
        ],
    }
    res = httpx.post(f"{running_stack.url}/v1/chat/completions", json=body, headers=running_stack.headers)
    assert res.status_code == 400 and message in res.json()["error"]["message"]
