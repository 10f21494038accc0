"""The tiny Hugging Face LLaMA the vLLM tests run on, checked here with transformers on CPU, and the
vLLM engine's prompt building (its model's own chat template), which needs no GPU."""

from __future__ import annotations

import pytest

from contracts.base import now_ms
from contracts.errors import InvalidRequest
from contracts.requests import ChatMessage, ChatRequest, CompletionRequest
from services.workers.engines.vllm import VllmConfig, VllmEngine
from services.workers.tiny_hf import ensure_tiny_hf

PNG = "data:image/png;base64,iVBORw0KGgo="


def test_the_tiny_model_loads_round_trips_text_and_generates() -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = ensure_tiny_hf()
    assert ensure_tiny_hf() == folder  # cached, not written twice
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder)
    text = "héllo wörld ✓ <|im_end|>"
    ids = tokenizer(text)["input_ids"]
    assert tokenizer.decode(ids) == text and tokenizer.convert_tokens_to_ids("<|im_end|>") in ids
    out = model.generate(torch.tensor([ids]), max_new_tokens=6, do_sample=False, min_new_tokens=6)
    assert out.shape[1] == len(ids) + 6
    assert sum(p.numel() for p in model.parameters()) < 2_000_000


def test_vllm_prompts_use_the_models_template_and_resume_after_delivered_text() -> None:
    from transformers import AutoTokenizer

    engine = VllmEngine(VllmConfig(model_id="tiny", model=str(ensure_tiny_hf())))
    engine._template = AutoTokenizer.from_pretrained(ensure_tiny_hf())
    chat = ChatRequest(
        request_id="p1",
        model="tiny",
        deadline_ms=now_ms() + 1000,
        messages=(ChatMessage(role="system", content="Be brief"), ChatMessage(role="user", content="Hi")),
    )
    prompt = engine._prompt(chat, "Hello the")
    assert prompt == {
        "prompt": "<|im_start|>system\nBe brief<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
        "<|im_start|>assistant\nHello the"
    }
    completion = CompletionRequest(request_id="p2", model="tiny", deadline_ms=now_ms() + 1000, prompt="Once")
    assert engine._prompt(completion, " upon") == {"prompt": "Once upon"}
    seeing = ChatRequest(
        request_id="p3",
        model="tiny",
        deadline_ms=now_ms() + 1000,
        messages=(ChatMessage(role="user", content="what is it", images=(PNG,)),),
    )
    with pytest.raises(InvalidRequest, match="cannot see images"):
        engine._prompt(seeing, "")
