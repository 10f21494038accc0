"""A resource domain's GPU memory share on a real GPU: a worker confined to its domain is refused an
allocation over its share of the card and served one under it, and a host worker plans within it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from services.common.domains import DomainSpec
from services.common.gpu_share import limit_gpu_memory, share_budget_mb

pytestmark = pytest.mark.gpu
SHARE = 0.1


@pytest.fixture
def confined() -> Iterator[int]:
    """This process held to a 0.1 share of GPU 0, as a torch engine of such a domain is; the card's
    bytes. The cap is lifted after."""
    import torch

    limit_gpu_memory("cuda:0", SHARE)
    try:
        yield torch.cuda.get_device_properties(0).total_memory
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0, 0)
        torch.cuda.empty_cache()


def test_an_allocation_over_the_share_is_refused_and_one_under_it_served(confined: int) -> None:
    import torch

    with pytest.raises(torch.cuda.OutOfMemoryError):
        torch.empty(int(confined * SHARE * 1.5), dtype=torch.uint8, device="cuda:0")
    under = torch.empty(int(confined * SHARE * 0.5), dtype=torch.uint8, device="cuda:0")
    assert under.is_cuda and torch.cuda.memory_allocated(0) >= under.numel()
    del under


def test_without_the_share_the_same_allocation_is_served() -> None:
    import torch

    total = torch.cuda.get_device_properties(0).total_memory
    block = torch.empty(int(total * SHARE * 1.5), dtype=torch.uint8, device="cuda:0")
    assert block.is_cuda
    del block
    torch.cuda.empty_cache()


def test_a_host_worker_plans_its_models_within_the_share() -> None:
    import torch

    total_mb = torch.cuda.get_device_properties(0).total_memory / 2**20
    assert share_budget_mb(DomainSpec(gpu_memory_fraction=0.25), "cuda:0") == pytest.approx(0.25 * total_mb)
    assert share_budget_mb(DomainSpec(), "cuda:0") is None
