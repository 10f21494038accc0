"""A tiny, deterministic, random-weight BERT cross-encoder in the Hugging Face layout (config.json,
safetensors, a WordPiece vocab), for the rerank engine's tests and `make run`: no hub needed.

The scores are noise, but tokenizing query and document as a pair, the forward pass, the sigmoid
over one logit and sorting are sentence-transformers' real `CrossEncoder` code paths. Written once
into the same cache as the tiny GGUF.
"""

from __future__ import annotations

import string
from dataclasses import dataclass
from pathlib import Path

from services.workers.tiny_cache import cached_folder
from services.workers.tiny_model import _digest, _pseudo_words

_SPECIALS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")


@dataclass(frozen=True)
class TinyCrossEncoderSpec:
    hidden_size: int = 32
    intermediate_size: int = 64
    num_hidden_layers: int = 2
    num_attention_heads: int = 2
    n_words: int = 500
    seed: int = 1234
    writer: int = 2  # bump when _write changes what it writes, so an old cached copy is not reused

    def digest(self) -> str:
        return _digest(self)


def ensure_tiny_cross_encoder(spec: TinyCrossEncoderSpec = TinyCrossEncoderSpec()) -> Path:
    """The model's folder, written on first use (well under a MB)."""
    return cached_folder(f"tiny-cross-encoder-{spec.digest()}", lambda folder: _write(spec, folder))


def _tokenizer(vocab: list[str]) -> object:
    """BERT's WordPiece pipeline over `vocab`, built with `tokenizers` (so no vocabulary download)."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    ids = {piece: i for i, piece in enumerate(vocab)}
    core = Tokenizer(models.WordPiece(vocab=ids, unk_token="[UNK]"))
    core.normalizer = normalizers.BertNormalizer(lowercase=True)
    core.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    core.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", ids["[CLS]"]), ("[SEP]", ids["[SEP]"])],
    )
    core.decoder = decoders.WordPiece()
    return PreTrainedTokenizerFast(
        tokenizer_object=core,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        model_input_names=["input_ids", "token_type_ids", "attention_mask"],
    )


def _write(spec: TinyCrossEncoderSpec, folder: Path) -> None:
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    pieces = [*string.ascii_lowercase, *string.digits, *string.punctuation]
    vocab = [*_SPECIALS, *pieces, *(f"##{p}" for p in pieces), *_pseudo_words(spec.n_words)]
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=spec.hidden_size,
        intermediate_size=spec.intermediate_size,
        num_hidden_layers=spec.num_hidden_layers,
        num_attention_heads=spec.num_attention_heads,
        max_position_embeddings=512,
        initializer_range=0.5,  # wide random weights: documents get visibly different scores
    )
    config.num_labels = 1  # one relevance logit: sentence-transformers scores it through a sigmoid
    torch.manual_seed(spec.seed)
    folder.mkdir(parents=True, exist_ok=True)
    BertForSequenceClassification(config).save_pretrained(folder, safe_serialization=True)
    _tokenizer(vocab).save_pretrained(folder)  # type: ignore[attr-defined]


if __name__ == "__main__":
    print(ensure_tiny_cross_encoder())
