"""A resource domain's memory share, where an engine or a host worker keeps to it: a torch engine caps
its GPU at the domain's `gpu_memory_fraction` (vLLM takes it as its `gpu_memory_utilization`), and a
host worker given no MEMORY_MB plans its models within the share of its GPU or of the RAM.

The worker passes the share to its engine (`Engine.gpu_memory_fraction`, set before `start`); a
model that outgrows it then fails to allocate instead of taking what another domain owns.
"""

from __future__ import annotations

from services.common.confinement import held_mb, ram_mb
from services.common.domains import DomainSpec


def share_budget_mb(spec: DomainSpec, device: str) -> float | None:
    """The memory a host worker on `device` may fill with models within its domain's share: of the
    GPU's on CUDA, of the machine's RAM otherwise, less what the process holds already. None: the
    domain gives no share there."""
    if device.startswith("cuda"):
        if spec.gpu_memory_fraction is None:
            return None
        import torch

        return spec.gpu_memory_fraction * torch.cuda.get_device_properties(torch.device(device)).total_memory / 2**20
    if spec.ram_fraction is None:
        return None
    return max(0.0, spec.ram_fraction * ram_mb() - held_mb())


def limit_gpu_memory(device: str, share: float | None) -> None:
    """For a torch engine about to load onto `device`: hold it to `share` of that GPU's memory (its
    domain's `gpu_memory_fraction`; None: no cap)."""
    if share is not None and device.startswith("cuda"):
        import torch

        torch.cuda.set_per_process_memory_fraction(share, torch.device(device))
