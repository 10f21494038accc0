"""Rerank (plain HTTP, the Cohere/Jina shape) and speech to text (the official `openai` client)
against the media stack: a WAV the speech worker made is transcribed by the tiny Whisper in every
response format, and translated."""

from __future__ import annotations

import json
import re

import httpx
import openai
import pytest

from services.devstack import LocalStack

pytestmark = pytest.mark.e2e
RERANK, STT, SPEECH = "tiny-reranker", "tiny-whisper", "espeak"
DOCS = ["a cat sat on the mat", "stocks fell sharply today", {"text": "kittens are young cats"}]


@pytest.fixture
def client(media_stack: LocalStack) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{media_stack.url}/v1", api_key=media_stack.api_key, max_retries=0)


@pytest.fixture(scope="module")
def wav(media_stack: LocalStack) -> bytes:
    client = openai.OpenAI(base_url=f"{media_stack.url}/v1", api_key=media_stack.api_key, max_retries=0)
    return client.audio.speech.create(
        model=SPEECH, input="Hello from the mesh", voice="alloy", response_format="wav"
    ).read()


def test_rerank_orders_documents_by_score(media_stack: LocalStack) -> None:
    body = {"model": RERANK, "query": "what is a cat", "documents": DOCS, "top_n": 2, "return_documents": True}
    reply = httpx.post(f"{media_stack.url}/v1/rerank", json=body, headers=media_stack.headers, timeout=60)
    assert reply.status_code == 200, reply.text
    results = reply.json()["results"]
    assert len(results) == 2 and results[0]["relevance_score"] >= results[1]["relevance_score"]
    texts = [d if isinstance(d, str) else d["text"] for d in DOCS]
    assert all(r["document"]["text"] == texts[r["index"]] for r in results)
    everything = httpx.post(
        f"{media_stack.url}/v1/rerank",
        json={**body, "top_n": None, "return_documents": False},
        headers=media_stack.headers,
    ).json()["results"]
    assert sorted(r["index"] for r in everything) == [0, 1, 2] and "document" not in everything[0]
    assert everything[:2] == [{k: v for k, v in r.items() if k != "document"} for r in results]
    empty = httpx.post(f"{media_stack.url}/v1/rerank", json={**body, "documents": []}, headers=media_stack.headers)
    assert empty.status_code == 400 and empty.json()["error"]["param"] == "documents"


def test_a_wav_the_speech_worker_made_is_transcribed_and_translated(client: openai.OpenAI, wav: bytes) -> None:
    verbose = client.audio.transcriptions.create(model=STT, file=("hello.wav", wav), response_format="verbose_json")
    assert 0.3 < verbose.duration < 10 and verbose.language  # the language: the tiny model's guess
    assert verbose.segments and 0.0 <= verbose.segments[0].start <= verbose.segments[-1].end <= verbose.duration + 0.01
    assert verbose.text == "".join(s.text for s in verbose.segments).strip()
    srt = client.audio.transcriptions.create(model=STT, file=("hello.wav", wav), response_format="srt", language="en")
    assert re.match(r"1\n00:00:\d\d,\d{3} --> 00:00:\d\d,\d{3}\n", srt)
    plain = client.audio.transcriptions.create(model=STT, file=("hello.wav", wav), response_format="text")
    assert isinstance(plain, str) and plain.endswith("\n")
    english = client.audio.translations.create(model=STT, file=("hello.wav", wav))
    assert isinstance(english.text, str)


def test_what_is_not_audio_or_not_served_is_refused(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as refused:
        client.audio.transcriptions.create(model=STT, file=("x.wav", b"not audio at all"))
    assert json.dumps(refused.value.body).find("file") >= 0
    with pytest.raises(openai.BadRequestError):
        client.audio.transcriptions.create(
            model=STT, file=("x.wav", b"RIFF"), response_format="verbose_json", timestamp_granularities=["word"]
        )
