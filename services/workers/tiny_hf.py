"""A tiny, deterministic, random-weight LLaMA in the Hugging Face layout (config.json, safetensors,
tokenizer.json), for engines that load that layout: vLLM above all.

Like the tiny GGUF, it needs no hub: the tokenizer is byte-level BPE over the 256 bytes and the chat
specials, so any text round-trips, and the model's own chat template is ChatML. The weights are
random, so the text is nonsense, but loading, sampling, streaming, stop sequences and cancellation
are the engine's real code paths. It is written once into a cache.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from services.workers.tiny_cache import cached_folder
from services.workers.tiny_model import CHATML_TEMPLATE, _digest

_SPECIALS = ("<s>", "</s>", "<|im_start|>", "<|im_end|>")


@dataclass(frozen=True)
class TinyHfSpec:
    hidden_size: int = 128
    intermediate_size: int = 256
    num_hidden_layers: int = 2
    num_attention_heads: int = 2  # head size 64: every attention backend takes it
    max_position_embeddings: int = 2048
    dtype: str = "bfloat16"
    seed: int = 1234

    def digest(self) -> str:
        return _digest(self)


def ensure_tiny_hf(spec: TinyHfSpec = TinyHfSpec()) -> Path:
    """The model's folder, written on first use (a few MB)."""
    return cached_folder(f"tiny-hf-llama-{spec.digest()}", lambda folder: _write(spec, folder))


def _tokenizer() -> object:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {piece: i for i, piece in enumerate([*_SPECIALS, *alphabet])}
    core = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    core.add_special_tokens(list(_SPECIALS))
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core, bos_token="<s>", eos_token="<|im_end|>", pad_token="</s>"
    )
    tokenizer.chat_template = CHATML_TEMPLATE
    return tokenizer


def _write(spec: TinyHfSpec, folder: Path) -> None:
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    tokenizer = _tokenizer()
    vocab_size = len(tokenizer)  # type: ignore[arg-type]
    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=spec.hidden_size,
        intermediate_size=spec.intermediate_size,
        num_hidden_layers=spec.num_hidden_layers,
        num_attention_heads=spec.num_attention_heads,
        num_key_value_heads=spec.num_attention_heads,
        max_position_embeddings=spec.max_position_embeddings,
        bos_token_id=tokenizer.bos_token_id,  # type: ignore[attr-defined]
        eos_token_id=tokenizer.eos_token_id,  # type: ignore[attr-defined]
        pad_token_id=tokenizer.pad_token_id,  # type: ignore[attr-defined]
        tie_word_embeddings=True,
    )
    torch.manual_seed(spec.seed)
    model = LlamaForCausalLM(config).to(getattr(torch, spec.dtype))
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder, safe_serialization=True)
    GenerationConfig(bos_token_id=config.bos_token_id, eos_token_id=config.eos_token_id).save_pretrained(folder)
    tokenizer.save_pretrained(folder)  # type: ignore[attr-defined]


if __name__ == "__main__":
    print(ensure_tiny_hf())
