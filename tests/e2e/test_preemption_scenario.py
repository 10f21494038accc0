"""The scripted preemption scenario (`make scenario-preemption`, bench/preemption.py) as a test: a
priority-9 model added to the catalog of a full host held by a priority-3 one that is mid-answer."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.preemption import preemption_stack, scenario

pytestmark = pytest.mark.e2e


async def test_a_priority_9_model_pushes_out_a_priority_3_one_mid_answer_and_the_answer_survives(
    tmp_path: Path,
) -> None:
    with preemption_stack(tmp_path) as (stack, catalog_file, source):
        result = await scenario(stack, catalog_file, source, max_tokens=1000)
    low = [(s["state"], s["reason"]) for s in result["states"] if s["model"] == "low-chat"]
    assert ("preempted", "preempted by high-chat") in low
    assert result["high_answer_model"] == "high-chat"
    assert result["upward_preemptions"] == 0
    # The answer cut off by the preemption was handed back, waited, and finished after the text it had.
    answer = result["cut_off_answer"]
    assert answer["finish_reason"] == "length" and answer["chars"] > answer["chars_before_catalog_edit"]
    # Freed by the operator, the host takes low-chat back within a few planning rounds (2 s each), not
    # after the 60 s a load undone between two heartbeats used to count as under way.
    assert result["low_running_again_after_unload_s"] is not None
    assert result["low_running_again_after_unload_s"] < 20
