"""A tiny, deterministic, random-weight LLaMA-architecture GGUF that llama.cpp loads for real.

It lets every machine, with no model hub and no GPU, run the real llama.cpp engine end to end. The
weights are random, so the text is nonsense, but tokenizer, chat template, sampling, stop sequences
and streaming are all the real code paths. The file is written once into a cache; the same
`TinySpec` always produces the same bytes.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import string
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from services.common.settings import CacheSettings

# ChatML, with content either a string or a list of parts (text, and images as their marker text).
CHATML_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}{{ part['text'] }}{% endfor %}{% endif %}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
_SPECIALS = ("<unk>", "<s>", "</s>", "<|im_start|>", "<|im_end|>")
# Bump when the writer changes what it writes, so cached files of the old layout are not reused.
FORMAT_VERSION = 5
_CONSONANTS = "bdfgklmnprstvz"
_VOWELS = "aeiou"
_PUNCT = list(".,!?;:'\"-()[]{}/\\@#$%^&*+=<>_`~|0123456789")


def _digest(spec: object) -> str:
    """Names a generated file after what it holds, so a changed spec or writer never reuses a stale one."""
    key = repr((FORMAT_VERSION, sorted(asdict(spec).items())))  # type: ignore[call-overload]
    return hashlib.sha256(key.encode()).hexdigest()[:12]


@dataclass(frozen=True)
class TinySpec:
    """Shape of the generated model. The defaults make a ~2 MB model fast enough for tests."""

    n_embd: int = 64
    n_layer: int = 2
    n_head: int = 4
    n_ff: int = 128
    n_ctx: int = 2048
    n_words: int = 2000
    seed: int = 1234

    def digest(self) -> str:
        return _digest(self)


# A larger shape, slow enough per token to look like a real model on a CPU; used by the benchmark.
BENCH_SPEC = TinySpec(n_embd=512, n_layer=8, n_head=8, n_ff=1408, n_words=8000)


def _pseudo_words(n: int) -> list[str]:
    """Pronounceable made-up words, so random output reads like text rather than byte soup."""
    syllables = [c + v for c, v in itertools.product(_CONSONANTS, _VOWELS)]
    words: list[str] = []
    for length in itertools.count(1):
        for combo in itertools.product(syllables, repeat=length):
            words.append("".join(combo))
            if len(words) == n:
                return words
    raise AssertionError("unreachable")


def _vocab(spec: TinySpec) -> tuple[list[str], list[float], list[int]]:
    import gguf

    tokens = list(_SPECIALS)
    types = [gguf.TokenType.UNKNOWN] + [gguf.TokenType.CONTROL] * (len(_SPECIALS) - 1)
    tokens += [f"<0x{b:02X}>" for b in range(256)]
    types += [gguf.TokenType.BYTE] * 256
    pieces = ["▁", *string.ascii_lowercase, *string.ascii_uppercase, *_PUNCT]
    pieces += ["▁" + w for w in _pseudo_words(spec.n_words)]
    pieces += _merge_steps()
    tokens += pieces
    types += [gguf.TokenType.NORMAL] * len(pieces)
    # SentencePiece prefers higher scores when merging; longer pieces win, bytes are the fallback.
    scores = [0.0] * (len(_SPECIALS) + 256) + [float(len(p)) for p in pieces]
    return tokens, scores, [int(t) for t in types]


def _merge_steps() -> list[str]:
    """The pieces SentencePiece passes through on its way from letters to a word: every syllable
    and `▁` with each consonant (a word is `▁` and syllables, and each of its syllable prefixes is
    a word too). With them, text the model wrote tokenizes back into the same words, as with a real
    vocabulary; without them it fell apart into letters, several times the tokens, and an answer
    resumed after a failover (its text so far is part of the new prompt) overflowed the context."""
    return [c + v for c, v in itertools.product(_CONSONANTS, _VOWELS)] + ["▁" + c for c in _CONSONANTS]


def _not_written(tokens: list[str]) -> list[int]:
    """Ids of the tokens the model never writes: the byte fallbacks (they could form invalid UTF-8,
    which llama-cpp-python holds back and re-decodes on every later token), single letters and the
    merge steps (text glued from them would tokenize back into other, fewer tokens)."""
    inner = {*_merge_steps(), *string.ascii_lowercase}
    byte_ids = range(len(_SPECIALS), len(_SPECIALS) + 256)
    return [*byte_ids, *(i for i, t in enumerate(tokens) if t in inner)]


def write_tiny_gguf(path: Path, spec: TinySpec) -> None:
    """Write the model described by `spec` to `path` (atomically)."""
    import gguf

    tokens, scores, types = _vocab(spec)
    rng = np.random.default_rng(spec.seed)

    def rand(*shape: int, scale: float = 0.08) -> np.ndarray:
        return (rng.standard_normal(shape) * scale).astype(np.float32)

    tmp = path.with_suffix(".tmp")
    writer = gguf.GGUFWriter(str(tmp), "llama")
    writer.add_name(f"modalmesh-tiny-{spec.digest()}")
    writer.add_context_length(spec.n_ctx)
    writer.add_embedding_length(spec.n_embd)
    writer.add_block_count(spec.n_layer)
    writer.add_feed_forward_length(spec.n_ff)
    writer.add_head_count(spec.n_head)
    writer.add_head_count_kv(spec.n_head)
    writer.add_rope_dimension_count(spec.n_embd // spec.n_head)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    writer.add_tokenizer_model("llama")
    writer.add_token_list(tokens)
    writer.add_token_scores(scores)
    writer.add_token_types(types)
    writer.add_unk_token_id(0)
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    writer.add_add_bos_token(True)
    writer.add_add_eos_token(False)
    # Text goes in as written: no SentencePiece space in front of a prompt.
    writer.add_add_space_prefix(False)
    writer.add_chat_template(CHATML_TEMPLATE)

    n_vocab, d = len(tokens), spec.n_embd
    # Dimension 0 of every embedding is a large constant that no layer writes to, so after the final
    # RMS norm it is a steady positive signal; the output rows of the tokens the model must not write
    # weigh it strongly negative. Any input still tokenizes through them.
    embeddings = rand(n_vocab, d, scale=1.0)
    embeddings[:, 0] = 10.0
    output = rand(n_vocab, d, scale=0.5)
    output[:, 0] = 0.0
    output[_not_written(tokens), 0] = -100.0

    def into_residual(w: np.ndarray) -> np.ndarray:
        w[0, :] = 0.0  # leaves dimension 0 of the residual stream alone
        return w

    writer.add_tensor("token_embd.weight", embeddings)
    for i in range(spec.n_layer):
        writer.add_tensor(f"blk.{i}.attn_norm.weight", np.ones(d, dtype=np.float32))
        for name in ("attn_q", "attn_k", "attn_v"):
            writer.add_tensor(f"blk.{i}.{name}.weight", rand(d, d))
        writer.add_tensor(f"blk.{i}.attn_output.weight", into_residual(rand(d, d)))
        writer.add_tensor(f"blk.{i}.ffn_norm.weight", np.ones(d, dtype=np.float32))
        writer.add_tensor(f"blk.{i}.ffn_gate.weight", rand(spec.n_ff, d))
        writer.add_tensor(f"blk.{i}.ffn_up.weight", rand(spec.n_ff, d))
        writer.add_tensor(f"blk.{i}.ffn_down.weight", into_residual(rand(d, spec.n_ff)))
    writer.add_tensor("output_norm.weight", np.ones(d, dtype=np.float32))
    writer.add_tensor("output.weight", output)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    os.replace(tmp, path)


@dataclass(frozen=True)
class TinyVisionSpec:
    """A LLaVA-style CLIP vision encoder with an MLP projector (an `mmproj` GGUF for llama.cpp's
    multimodal library): 32x32 pixels in 8x8 patches, so every image is 16 embeddings of the text
    model's width."""

    text: TinySpec = TinySpec()
    image_size: int = 32
    patch_size: int = 8
    n_embd: int = 32
    n_ff: int = 64
    n_head: int = 4
    n_layer: int = 2
    projector_scale: float = 0.5  # large enough that what an image shows changes what the model says
    seed: int = 4321

    @property
    def image_tokens(self) -> int:
        return (self.image_size // self.patch_size) ** 2

    def digest(self) -> str:
        return _digest(self)


def write_tiny_mmproj(path: Path, spec: TinyVisionSpec) -> None:
    """Write the vision projector for `spec.text` (atomically), with llama.cpp's CLIP tensor names."""
    import gguf

    rng = np.random.default_rng(spec.seed)
    d, ff = spec.n_embd, spec.n_ff

    def rand(*shape: int, scale: float = 0.05) -> np.ndarray:
        return (rng.standard_normal(shape) * scale).astype(np.float32)

    def ones(n: int) -> np.ndarray:
        return np.ones(n, dtype=np.float32)

    def zeros(n: int) -> np.ndarray:
        return np.zeros(n, dtype=np.float32)

    tmp = path.with_suffix(".tmp")
    writer = gguf.GGUFWriter(str(tmp), "clip")
    writer.add_clip_has_vision_encoder(True)
    writer.add_clip_projector_type("mlp")
    writer.add_vision_image_size(spec.image_size)
    writer.add_vision_patch_size(spec.patch_size)
    writer.add_vision_embedding_length(d)
    writer.add_vision_feed_forward_length(ff)
    writer.add_vision_projection_dim(spec.text.n_embd)
    writer.add_vision_head_count(spec.n_head)
    writer.add_vision_attention_layernorm_eps(1e-5)
    writer.add_vision_block_count(spec.n_layer)
    writer.add_vision_image_mean([0.5, 0.5, 0.5])
    writer.add_vision_image_std([0.5, 0.5, 0.5])
    writer.add_vision_use_gelu(True)
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    writer.add_tensor("v.patch_embd.weight", rand(d, 3, spec.patch_size, spec.patch_size))
    writer.add_tensor("v.class_embd", rand(d))
    writer.add_tensor("v.position_embd.weight", rand(spec.image_tokens + 1, d))
    writer.add_tensor("v.pre_ln.weight", ones(d))
    writer.add_tensor("v.pre_ln.bias", zeros(d))
    for i in range(spec.n_layer):
        for name in ("attn_q", "attn_k", "attn_v", "attn_out"):
            writer.add_tensor(f"v.blk.{i}.{name}.weight", rand(d, d))
            writer.add_tensor(f"v.blk.{i}.{name}.bias", zeros(d))
        for name in ("ln1", "ln2"):
            writer.add_tensor(f"v.blk.{i}.{name}.weight", ones(d))
            writer.add_tensor(f"v.blk.{i}.{name}.bias", zeros(d))
        writer.add_tensor(f"v.blk.{i}.ffn_up.weight", rand(ff, d))
        writer.add_tensor(f"v.blk.{i}.ffn_up.bias", zeros(ff))
        writer.add_tensor(f"v.blk.{i}.ffn_down.weight", rand(d, ff))
        writer.add_tensor(f"v.blk.{i}.ffn_down.bias", zeros(d))
    writer.add_tensor("mm.0.weight", rand(spec.text.n_embd, d, scale=spec.projector_scale))
    writer.add_tensor("mm.0.bias", zeros(spec.text.n_embd))
    writer.add_tensor("mm.2.weight", rand(spec.text.n_embd, spec.text.n_embd, scale=spec.projector_scale))
    writer.add_tensor("mm.2.bias", zeros(spec.text.n_embd))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    os.replace(tmp, path)


def cache_dir() -> Path:
    """Where the tiny models are written (see `CacheSettings`)."""
    return CacheSettings().cache / "models"


def _cached(name: str, digest: str, write: Callable[[Path], None]) -> Path:
    """`<cache>/<name>-<digest>.gguf`, written by `write` on first use."""
    path = cache_dir() / f"{name}-{digest}.gguf"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        write(path)
    return path


def ensure_tiny_gguf(spec: TinySpec | None = None) -> Path:
    """Path of the tiny model for `spec`, writing it into the cache on first use."""
    chosen = spec or TinySpec()
    return _cached("tiny-llama", chosen.digest(), lambda path: write_tiny_gguf(path, chosen))


def ensure_tiny_mmproj(spec: TinyVisionSpec | None = None) -> Path:
    """Path of the vision projector for the tiny model, writing it into the cache on first use."""
    chosen = spec or TinyVisionSpec()
    return _cached("tiny-mmproj", chosen.digest(), lambda path: write_tiny_mmproj(path, chosen))


if __name__ == "__main__":
    import sys

    chosen = BENCH_SPEC if sys.argv[1:] == ["bench"] else TinySpec()
    print(ensure_tiny_gguf(chosen))
