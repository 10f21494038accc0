"""A tiny, deterministic, random-weight Whisper in the Hugging Face layout (config, safetensors,
tokenizer, feature extractor, generation config), for the speech-to-text engine's tests and
`make run`: no hub needed.

The tokenizer is byte-level BPE over the 256 bytes (any text round-trips) followed by Whisper's own
special tokens in Whisper's order (end of text, start of transcript, the languages, translate and
transcribe, no-timestamps, then the 1501 timestamps 0.00 to 30.00), so transformers' Whisper
generation (language detection, task tokens, timestamp rules) runs as it does for a real
checkpoint. The words are noise; the audio decoding, log-mel features, generation and segment
timing are the real code paths.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from services.workers.tiny_cache import cached_folder
from services.workers.tiny_model import _digest


@dataclass(frozen=True)
class TinyWhisperSpec:
    d_model: int = 64
    layers: int = 2
    heads: int = 2
    ffn_dim: int = 128
    max_target_positions: int = 448
    max_length: int = 24  # a window's tokens, start tokens included: random weights never end on their own
    seed: int = 1234
    writer: int = 2  # bump when _write changes what it writes, so an old cached copy is not reused

    def digest(self) -> str:
        return _digest(self)


def ensure_tiny_whisper(spec: TinyWhisperSpec = TinyWhisperSpec()) -> Path:
    """The model's folder, written on first use (about a MB)."""
    return cached_folder(f"tiny-whisper-{spec.digest()}", lambda folder: _write(spec, folder))


def _specials() -> list[str]:
    from transformers.models.whisper.tokenization_whisper import LANGUAGES

    return [
        "<|endoftext|>",
        "<|startoftranscript|>",
        *(f"<|{code}|>" for code in LANGUAGES),
        "<|translate|>",
        "<|transcribe|>",
        "<|startoflm|>",
        "<|startofprev|>",
        "<|nospeech|>",
        "<|notimestamps|>",
        *(f"<|{i * 0.02:.2f}|>" for i in range(1501)),
    ]


def _tokenizer() -> Any:
    from tokenizers import pre_tokenizers
    from transformers import WhisperTokenizer

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    tokenizer = WhisperTokenizer(vocab={piece: i for i, piece in enumerate(alphabet)}, merges=[])
    tokenizer.add_special_tokens({"additional_special_tokens": _specials()})
    return tokenizer


def _write(spec: TinyWhisperSpec, folder: Path) -> None:
    import torch
    from transformers import (
        GenerationConfig,
        WhisperConfig,
        WhisperFeatureExtractor,
        WhisperForConditionalGeneration,
        WhisperProcessor,
    )
    from transformers.models.whisper.tokenization_whisper import LANGUAGES

    tokenizer = _tokenizer()
    ids = tokenizer.convert_tokens_to_ids
    eot, sot = ids("<|endoftext|>"), ids("<|startoftranscript|>")
    config = WhisperConfig(
        vocab_size=len(tokenizer),
        num_mel_bins=80,
        d_model=spec.d_model,
        encoder_layers=spec.layers,
        decoder_layers=spec.layers,
        encoder_attention_heads=spec.heads,
        decoder_attention_heads=spec.heads,
        encoder_ffn_dim=spec.ffn_dim,
        decoder_ffn_dim=spec.ffn_dim,
        max_target_positions=spec.max_target_positions,
        decoder_start_token_id=sot,
        bos_token_id=eot,
        eos_token_id=eot,
        pad_token_id=eot,
    )
    torch.manual_seed(spec.seed)
    model = WhisperForConditionalGeneration(config)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder, safe_serialization=True)
    generation = GenerationConfig(
        decoder_start_token_id=sot,
        bos_token_id=eot,
        eos_token_id=eot,
        pad_token_id=eot,
        max_length=spec.max_length,
        is_multilingual=True,
        lang_to_id={f"<|{code}|>": ids(f"<|{code}|>") for code in LANGUAGES},
        task_to_id={"transcribe": ids("<|transcribe|>"), "translate": ids("<|translate|>")},
        no_timestamps_token_id=ids("<|notimestamps|>"),
        prev_sot_token_id=ids("<|startofprev|>"),
        max_initial_timestamp_index=50,
        suppress_tokens=[],
        begin_suppress_tokens=[eot],
    )
    generation.save_pretrained(folder)
    WhisperProcessor(feature_extractor=WhisperFeatureExtractor(feature_size=80), tokenizer=tokenizer).save_pretrained(
        folder
    )


if __name__ == "__main__":
    print(ensure_tiny_whisper())
