"""A tiny Piper voice with random weights, for tests: an ONNX model with Piper's interface (phoneme
ids, their count, and noise/length/noise-w scales in; 16-bit-ready audio out) and its JSON config
with an eSpeak phoneme map. Piper's own loader, phonemizer and synthesis loop run it unchanged; the
sound is noise, a hop of samples per phoneme id, stretched by the length scale.

Needs the `onnx` package to write (the test extra); a real voice is any Piper `.onnx` + `.onnx.json`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from services.workers.tiny_model import cache_dir

FORMAT_VERSION = 1
SAMPLE_RATE = 16000
HOP = 256
# Piper's specials (pad, sentence start and end), ASCII, and the IPA block with its modifier letters
# (stress and length marks), which eSpeak writes phonemes with.
_SYMBOLS = ["_", "^", "$", " ", *map(chr, range(33, 127)), *map(chr, range(0x0250, 0x0370))]


def phoneme_id_map() -> dict[str, list[int]]:
    seen: dict[str, list[int]] = {}
    for symbol in _SYMBOLS:
        seen.setdefault(symbol, [len(seen)])
    return seen


def write_tiny_voice(model_path: Path, seed: int = 0, hidden: int = 16) -> None:
    """Write `<model_path>` and `<model_path>.json` (atomically: the config last)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    ids = phoneme_id_map()
    rng = np.random.default_rng(seed)

    def const(name: str, value: np.ndarray) -> onnx.NodeProto:
        return helper.make_node("Constant", [], [name], value=numpy_helper.from_array(value))

    nodes = [
        helper.make_node("Gather", ["embedding", "input"], ["embedded"], axis=0),  # [1, n, hidden]
        helper.make_node("MatMul", ["embedded", "to_samples"], ["frames"]),  # [1, n, hop]
        helper.make_node("Tanh", ["frames"], ["wave"]),
        const("flat_shape", np.array([1, 1, -1], np.int64)),
        helper.make_node("Reshape", ["wave", "flat_shape"], ["flat"]),  # [1, 1, n * hop]
        const("one_one", np.array([1.0, 1.0], np.float32)),
        const("from", np.array([1], np.int64)),
        const("to", np.array([2], np.int64)),
        helper.make_node("Slice", ["scales", "from", "to"], ["length_scale"]),
        helper.make_node("Concat", ["one_one", "length_scale"], ["stretch"], axis=0),
        helper.make_node("Resize", ["flat", "", "stretch"], ["output"], mode="nearest"),
    ]
    weights = [
        numpy_helper.from_array(rng.standard_normal((len(ids), hidden)).astype(np.float32), "embedding"),
        numpy_helper.from_array((rng.standard_normal((hidden, HOP)) * 0.5).astype(np.float32), "to_samples"),
    ]
    graph = helper.make_graph(
        nodes,
        "modalmesh_tiny_piper",
        [
            helper.make_tensor_value_info("input", TensorProto.INT64, [1, "phonemes"]),
            helper.make_tensor_value_info("input_lengths", TensorProto.INT64, [1]),
            helper.make_tensor_value_info("scales", TensorProto.FLOAT, [3]),
        ],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 1, "samples"])],
        weights,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    config = {
        "audio": {"sample_rate": SAMPLE_RATE},
        "espeak": {"voice": "en-us"},
        "phoneme_type": "espeak",
        "num_symbols": len(ids),
        "num_speakers": 1,
        "hop_length": HOP,
        "phoneme_id_map": ids,
        "inference": {"noise_scale": 0.667, "length_scale": 1.0, "noise_w": 0.8},
    }
    tmp = model_path.with_suffix(".tmp")
    onnx.save(model, str(tmp))
    os.replace(tmp, model_path)
    tmp_json = model_path.with_suffix(".json.tmp")
    tmp_json.write_text(json.dumps(config, ensure_ascii=False))
    os.replace(tmp_json, Path(f"{model_path}.json"))


def ensure_tiny_voice() -> Path:
    """The tiny voice's `.onnx` (its config beside it), written into the cache on first use."""
    path = cache_dir() / f"tiny-piper-v{FORMAT_VERSION}.onnx"
    if not Path(f"{path}.json").exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        write_tiny_voice(path)
    return path
