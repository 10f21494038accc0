"""The overhead bench's transport floor goes the whole way: its front answers only when the last hop
publishes `out.<request>`, which it does only for what the stage before stored, and so on back to
the request the front stored."""

from __future__ import annotations

import httpx

from bench.floor import floor_stack
from bench.overhead import stream_once


async def test_a_chat_through_the_transport_floor_comes_back_through_every_hop() -> None:
    with floor_stack() as url:
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            replies = [await stream_once(client, 1, seed=i) for i in range(3)]
    assert len({rid for rid, _, _, _ in replies}) == 3
    assert all(first > 0 and pieces == 1 for _, first, _, pieces in replies)
