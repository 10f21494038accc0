"""Estimated dense FP16 tensor throughput of known GPUs, for ranking nodes before any load is seen.

Figures are the dense (no sparsity) FP16 tensor-core TFLOPS from NVIDIA's product datasheets and
architecture whitepapers (Hopper, Ada, Ampere, Turing, Volta, Jetson Orin/Xavier module data
sheets). They are estimates for comparison, not a promise of achieved speed.
"""

from __future__ import annotations

# Longest key first wins, so "h100 pcie" is not taken for "h100".
KNOWN_FP16_TFLOPS: dict[str, float] = {
    "h200": 989.0,
    "h100 pcie": 756.0,
    "h100 nvl": 835.0,
    "h100": 989.0,
    "gh200": 989.0,
    "a100": 312.0,
    "a10g": 125.0,
    "a10": 125.0,
    "a30": 165.0,
    "l40s": 362.0,
    "l40": 181.0,
    "l4": 121.0,
    "rtx 6000 ada": 364.0,
    "rtx a6000": 155.0,
    "rtx 4090": 165.0,
    "rtx 4080": 97.0,
    "rtx 4070": 58.0,
    "rtx 3090": 71.0,
    "rtx 3080": 60.0,
    "rtx 3070": 41.0,
    "rtx 3060": 25.0,
    "t4": 65.0,
    "v100": 125.0,
    "orin agx": 85.0,
    "agx orin": 85.0,
    "orin nx": 50.0,
    "orin nano": 20.0,
    "xavier": 22.0,
}


def estimate_fp16_tflops(name: str) -> float | None:
    """The table's figure for a GPU name as NVML or jtop reports it, or None if unknown."""
    lowered = name.lower()
    for key in sorted(KNOWN_FP16_TFLOPS, key=len, reverse=True):
        if key in lowered:
            return KNOWN_FP16_TFLOPS[key]
    return None
