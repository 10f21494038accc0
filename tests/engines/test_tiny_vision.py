"""The tiny vision projector is a real one: llama.cpp's multimodal library loads it beside the tiny
model, each image becomes its patch embeddings, and what the image shows changes the next-token
distribution."""

from __future__ import annotations

import base64
import io
from typing import Any

from PIL import Image

from services.workers.tiny_model import TinyVisionSpec, ensure_tiny_gguf, ensure_tiny_mmproj


def _ask(llm: Any, color: tuple[int, int, int] | None) -> dict[str, Any]:
    content: list[dict[str, Any]] = []
    if color is not None:
        out = io.BytesIO()
        Image.new("RGB", (48, 40), color).save(out, format="PNG")
        content.append(
            {
                "type": "image_url",
                "image_url": {"url": "data:image/png;base64," + base64.b64encode(out.getvalue()).decode()},
            }
        )
    content.append({"type": "text", "text": "What?"})
    return llm.create_chat_completion(
        messages=[{"role": "user", "content": content}],
        max_tokens=1,  # type: ignore[no-any-return]
        temperature=0,
        logprobs=True,
        top_logprobs=3,
    )


def test_images_become_patch_embeddings_that_change_the_answer() -> None:
    from llama_cpp import Llama
    from llama_cpp.llama_chat_format import MTMDChatHandler

    vision = MTMDChatHandler(clip_model_path=str(ensure_tiny_mmproj()), verbose=False, use_gpu=False)
    llm = Llama(model_path=str(ensure_tiny_gguf()), chat_handler=vision, n_ctx=512, verbose=False, logits_all=True)
    try:
        red, blue, red_again = _ask(llm, (255, 0, 0)), _ask(llm, (0, 0, 255)), _ask(llm, (255, 0, 0))
        text = _ask(llm, None)

        def top(reply: dict[str, Any]) -> list[float]:
            return [float(t["logprob"]) for t in reply["choices"][0]["logprobs"]["content"][0]["top_logprobs"]]

        assert red["usage"]["prompt_tokens"] - text["usage"]["prompt_tokens"] == TinyVisionSpec().image_tokens
        assert top(red) == top(red_again)
        assert max(abs(a - b) for a, b in zip(top(red), top(blue), strict=True)) > 0.05
    finally:
        llm.close()
