"""Prompt sources: random words of a set token length (seeded), a JSONL file, or a ShareGPT file."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from pathlib import Path

from loadgen.spec import PromptSource

# Short common words: with llama-style tokenizers each is about one token, so N words is about N tokens.
WORDS = (
    "the of and to in is was for on are with as his they be at one have this from or had by hot word but what "
    "some we can out other were all there when up use your how said an each she which do their time if will way "
    "about many then them write would like so these her long make thing see him two has look more day could go "
    "come did number sound no most people my over know water than call first who may down side been now find"
).split()


def random_prompt(rng: random.Random, tokens: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(tokens))


def read_jsonl(path: Path, field: str) -> list[str]:
    prompts = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        row = json.loads(line)
        text = row.get(field) if isinstance(row, dict) else None
        if not isinstance(text, str) or not text:
            raise ValueError(f"{path}:{number}: no text under {field!r}")
        prompts.append(text)
    return prompts


def read_sharegpt(path: Path) -> list[str]:
    """The first human turn of each conversation, as vLLM's and GuideLLM's ShareGPT readers take it."""
    prompts = []
    for entry in json.loads(path.read_text()):
        turns = entry.get("conversations") or entry.get("conversation") or []
        first = next((t.get("value") for t in turns if t.get("from") in {"human", "user"}), None)
        if isinstance(first, str) and first:
            prompts.append(first)
    return prompts


def prompts(source: PromptSource, seed: int) -> Iterator[str]:
    """An endless stream of prompts: random ones fresh each time, file ones in turn, from the start again."""
    rng = random.Random(seed)
    if source.source == "random":
        while True:
            yield random_prompt(rng, source.tokens)
    assert source.path is not None
    texts = read_jsonl(source.path, source.field) if source.source == "jsonl" else read_sharegpt(source.path)
    if not texts:
        raise ValueError(f"{source.path}: no prompts")
    while True:
        yield from texts
