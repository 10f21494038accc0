"""Embeddings, images and speech through the OpenAI endpoints, with the official client, against the
stack with its real default engines: MiniLM from its wheel, the tiny SD pipeline, eSpeak NG."""

from __future__ import annotations

import base64
import io
import struct

import httpx
import numpy as np
import openai
import pytest
from PIL import Image

from services.devstack import LocalStack

pytestmark = pytest.mark.e2e
EMBED, IMAGE, SPEECH = "all-minilm-l6-v2", "tiny-sd", "espeak"


@pytest.fixture
def client(media_stack: LocalStack) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{media_stack.url}/v1", api_key=media_stack.api_key, max_retries=0)


def _cos(a: list[float], b: list[float]) -> float:
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))


def test_embeddings_have_the_model_dimension_unit_norm_and_meaning(client: openai.OpenAI) -> None:
    texts = ["a cat sleeps on the sofa", "a kitten naps on the couch", "the stock market fell sharply today"]
    reply = client.embeddings.create(model=EMBED, input=texts)
    vectors = [d.embedding for d in sorted(reply.data, key=lambda d: d.index)]
    assert [d.index for d in reply.data] == [0, 1, 2]
    assert all(len(v) == 384 for v in vectors)
    assert all(abs(np.linalg.norm(v) - 1.0) < 1e-3 for v in vectors)  # the model normalises
    assert _cos(vectors[0], vectors[1]) > _cos(vectors[0], vectors[2]) + 0.2
    assert reply.usage.prompt_tokens > len(texts)
    alone = client.embeddings.create(model=EMBED, input=texts[2]).data[0].embedding
    assert np.allclose(alone, vectors[2], atol=1e-4)  # batching does not change a vector


def test_embeddings_base64_and_dimensions(media_stack: LocalStack) -> None:
    body = {"model": EMBED, "input": ["hello", "world"], "encoding_format": "base64", "dimensions": 64}
    res = httpx.post(f"{media_stack.url}/v1/embeddings", json=body, headers=media_stack.headers, timeout=60)
    assert res.status_code == 200, res.text
    for item in res.json()["data"]:
        vector = np.frombuffer(base64.b64decode(item["embedding"]), dtype="<f4")
        assert vector.shape == (64,) and abs(np.linalg.norm(vector) - 1.0) < 1e-3


def test_images_are_pngs_of_the_asked_size(client: openai.OpenAI, media_stack: LocalStack) -> None:
    reply = client.images.generate(
        model=IMAGE,
        prompt="a red cat",
        size="96x64",
        n=2,
        response_format="b64_json",
        extra_body={"steps": 3, "seed": 7},
    )
    assert len(reply.data) == 2
    for item in reply.data:
        image = Image.open(io.BytesIO(base64.b64decode(item.b64_json or "")))
        assert image.format == "PNG" and image.size == (96, 64)
    # url mode: a signed link that works without the key, and not once tampered with
    url = client.images.generate(model=IMAGE, prompt="a red cat", size="64x64", extra_body={"steps": 2}).data[0].url
    assert url is not None
    fetched = httpx.get(url)
    assert fetched.status_code == 200 and fetched.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(fetched.content)).size == (64, 64)
    assert httpx.get(url.replace("sig=", "sig=0")).status_code == 401
    file_id = url.split("/files/")[1].split("?")[0]
    with_key = httpx.get(f"{media_stack.url}/v1/files/{file_id}", headers=media_stack.headers)
    assert with_key.content == fetched.content
    assert httpx.get(f"{media_stack.url}/v1/files/nope.png", headers=media_stack.headers).status_code == 404


def test_same_seed_same_image(client: openai.OpenAI) -> None:
    def make(seed: int) -> bytes:
        item = client.images.generate(
            model=IMAGE,
            prompt="a boat",
            size="64x64",
            response_format="b64_json",
            extra_body={"steps": 2, "seed": seed},
        ).data[0]
        return base64.b64decode(item.b64_json or "")

    first = make(3)
    assert make(3) == first and make(4) != first


def _wav_seconds(wav: bytes) -> float:
    assert wav[:4] == b"RIFF" and wav[8:12] == b"WAVE"
    channels, rate = struct.unpack("<HI", wav[22:28])
    bits = struct.unpack("<H", wav[34:36])[0]
    assert (channels, bits) == (1, 16)
    return (len(wav) - 44) / (rate * 2)


def test_speech_wav_grows_with_the_text(client: openai.OpenAI) -> None:
    short = client.audio.speech.create(model=SPEECH, input="Hello.", voice="alloy", response_format="wav").read()
    long = client.audio.speech.create(
        model=SPEECH, input="Hello. " * 12 + "This sentence is much longer.", voice="alloy", response_format="wav"
    ).read()
    assert 0.2 < _wav_seconds(short) < _wav_seconds(long) / 3


def test_speech_mp3_pcm_and_speed(client: openai.OpenAI) -> None:
    mp3 = client.audio.speech.create(model=SPEECH, input="Testing one two three.", voice="nova").read()
    assert mp3[:2] in (b"\xff\xf3", b"\xff\xfb", b"\xff\xf2") or mp3[:3] == b"ID3"
    normal = client.audio.speech.create(
        model=SPEECH, input="Testing one two three four five.", voice="en", response_format="pcm"
    ).read()
    fast = client.audio.speech.create(
        model=SPEECH, input="Testing one two three four five.", voice="en", response_format="pcm", speed=2.0
    ).read()
    assert len(normal) % 2 == 0 and len(fast) < len(normal) * 0.75


@pytest.mark.parametrize(
    ("path", "body", "status"),
    [
        ("/v1/images/generations", {"model": IMAGE, "prompt": "x", "size": "65x64"}, 400),
        ("/v1/images/generations", {"model": IMAGE, "prompt": "x", "size": "4096x4096"}, 400),
        ("/v1/images/generations", {"model": IMAGE, "prompt": ""}, 400),
        ("/v1/images/generations", {"model": EMBED, "prompt": "x", "size": "64x64"}, 400),
        ("/v1/embeddings", {"model": EMBED, "input": []}, 400),
        ("/v1/embeddings", {"model": EMBED, "input": [""]}, 400),
        ("/v1/embeddings", {"model": EMBED, "input": "x", "dimensions": 1000}, 400),
        ("/v1/embeddings", {"model": "no-such-model", "input": "x"}, 404),
        ("/v1/audio/speech", {"model": SPEECH, "input": "x", "voice": "no-such-voice"}, 400),
        ("/v1/audio/speech", {"model": SPEECH, "input": "x", "response_format": "opus"}, 400),
        ("/v1/audio/speech", {"model": SPEECH, "input": "x" * 5000}, 400),
    ],
)
def test_bad_media_requests_get_clear_errors(
    media_stack: LocalStack, path: str, body: dict[str, object], status: int
) -> None:
    res = httpx.post(f"{media_stack.url}{path}", json=body, headers=media_stack.headers, timeout=60)
    assert res.status_code == status, res.text
    assert res.json()["error"]["message"]


def test_a_configured_piper_voice_speaks(client: openai.OpenAI) -> None:
    from services.workers.tiny_voice import SAMPLE_RATE

    model = next(m.id for m in client.models.list().data if m.id.startswith("tiny-piper"))
    wav = client.audio.speech.create(
        model=model, input="One sentence. And another.", voice="alloy", response_format="wav"
    ).read()
    assert struct.unpack("<I", wav[24:28])[0] == SAMPLE_RATE and _wav_seconds(wav) > 0.1
