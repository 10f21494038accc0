"""Tiny text-to-image and text-to-video pipelines with random weights, built from configs, for tests
and `make run`.

The image one is a real Stable Diffusion pipeline in every part (CLIP text encoder and tokenizer,
UNet with cross attention, KL autoencoder, Euler scheduler), the video one a real CogVideoX (T5,
3D transformer, causal 3D VAE), each only a few layers wide: they load in a second and make a
64x64 image or a 9-frame clip in well under a second on a CPU. The pictures are noise; the shapes,
the steps, the progress, the PNGs and MP4s are the real code paths. Built once into the cache with
`save_pretrained`, and loaded back by diffusers like any downloaded model.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from pathlib import Path

from services.workers.tiny_cache import cached_folder
from services.workers.tiny_model import cache_dir

FORMAT_VERSION = 3  # bump when what is written changes, so an old cached copy is not reused


def _byte_level_vocab() -> dict[str, int]:
    """CLIP's byte-level BPE alphabet (every byte as a printable character, alone and word-final) and
    its two special tokens. With no merges, every character is one token: a small but real vocab."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    chars, extra = list(printable), 0
    for b in range(256):
        if b not in printable:
            chars.append(256 + extra)
            extra += 1
    symbols = [chr(c) for c in chars]
    vocab = {s: i for i, s in enumerate(symbols)}
    vocab.update({s + "</w>": len(symbols) + i for i, s in enumerate(symbols)})
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    return vocab


def write_tiny_sd(folder: Path, seed: int = 0) -> None:
    import torch
    from diffusers import AutoencoderKL, EulerDiscreteScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    torch.manual_seed(seed)
    with tempfile.TemporaryDirectory() as scratch:
        vocab = _byte_level_vocab()
        (Path(scratch) / "vocab.json").write_text(json.dumps(vocab))
        (Path(scratch) / "merges.txt").write_text("#version: 0.2\n")
        tokenizer = CLIPTokenizer(
            str(Path(scratch) / "vocab.json"), str(Path(scratch) / "merges.txt"), model_max_length=77
        )
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=len(vocab),
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            max_position_embeddings=77,
            projection_dim=32,
            bos_token_id=vocab["<|startoftext|>"],
            eos_token_id=vocab["<|endoftext|>"],
            pad_token_id=vocab["<|endoftext|>"],
        )
    )
    unet = UNet2DConditionModel(
        sample_size=32,
        in_channels=4,
        out_channels=4,
        layers_per_block=1,
        block_out_channels=(32, 64),
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32,
        norm_num_groups=32,
    )
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        latent_channels=4,
        block_out_channels=(32, 64),
        norm_num_groups=32,
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
    )
    scheduler = EulerDiscreteScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", steps_offset=1
    )
    pipe = StableDiffusionPipeline(
        unet=unet,
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.save_pretrained(str(folder), safe_serialization=True)  # type: ignore[attr-defined]


def write_tiny_cogvideox(folder: Path, seed: int = 0) -> None:
    """A CogVideoX pipeline (T5 encoder, 3D transformer, causal 3D VAE, DDIM) a few layers wide. The
    T5 tokenizer is a real Unigram model over printable ASCII, made here instead of downloaded."""
    import torch
    from diffusers import AutoencoderKLCogVideoX, CogVideoXDDIMScheduler, CogVideoXPipeline, CogVideoXTransformer3DModel
    from transformers import T5Config, T5EncoderModel, T5Tokenizer

    torch.manual_seed(seed)
    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)]
    pieces += [(chr(c), -2.0) for c in range(33, 127)] + [("\u2581" + chr(c), -1.0) for c in range(33, 127)]
    tokenizer = T5Tokenizer(vocab=pieces, extra_ids=0, model_max_length=TINY_VIDEO_TEXT_TOKENS)
    text_encoder = T5EncoderModel(
        T5Config(
            vocab_size=len(pieces),
            d_model=32,
            d_kv=8,
            d_ff=64,
            num_layers=2,
            num_heads=4,
            relative_attention_num_buckets=8,
            pad_token_id=0,
            eos_token_id=1,
        )
    )
    transformer = CogVideoXTransformer3DModel(
        num_attention_heads=4,
        attention_head_dim=8,
        in_channels=4,
        out_channels=4,
        time_embed_dim=2,
        text_embed_dim=32,
        num_layers=1,
        sample_width=8,
        sample_height=8,
        sample_frames=9,
        patch_size=2,
        temporal_compression_ratio=4,
        max_text_seq_length=TINY_VIDEO_TEXT_TOKENS,
    )
    vae = AutoencoderKLCogVideoX(
        in_channels=3,
        out_channels=3,
        latent_channels=4,
        layers_per_block=1,
        norm_num_groups=2,
        block_out_channels=(8, 8, 8, 8),
        temporal_compression_ratio=4,
        down_block_types=("CogVideoXDownBlock3D",) * 4,
        up_block_types=("CogVideoXUpBlock3D",) * 4,
    )
    pipe = CogVideoXPipeline(
        tokenizer=tokenizer,
        text_encoder=text_encoder,
        vae=vae,
        transformer=transformer,
        scheduler=CogVideoXDDIMScheduler(),
    )
    pipe.save_pretrained(str(folder), safe_serialization=True)  # type: ignore[attr-defined]


TINY_VIDEO_TEXT_TOKENS = 16


def _folder(name: str) -> Path:
    return cache_dir() / f"{name}-v{FORMAT_VERSION}"


def tiny_pipelines_cached() -> bool:
    return all((_folder(name) / "model_index.json").exists() for name in ("tiny-sd", "tiny-cogvideox"))


def _ensure(name: str, write: Callable[[Path], None]) -> Path:
    """Folder `name` in the cache, built by `write` on first use (see `cached_folder`)."""
    return cached_folder(_folder(name).name, write, marker="model_index.json")


def ensure_tiny_sd() -> Path:
    return _ensure("tiny-sd", write_tiny_sd)


def ensure_tiny_video() -> Path:
    return _ensure("tiny-cogvideox", write_tiny_cogvideox)


if __name__ == "__main__":
    print(ensure_tiny_sd())
    print(ensure_tiny_video())
