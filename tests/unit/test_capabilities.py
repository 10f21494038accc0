"""The capability table: what each engine honours, the refusals it makes, and the doc that shows it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from contracts.base import now_ms
from contracts.capabilities import (
    ENGINE_FIELD_NAMES,
    ENGINE_FIELDS,
    GATEWAY_FIELDS,
    check_fields,
    fields_in_use,
    unhonoured,
)
from contracts.errors import InvalidRequest
from contracts.requests import ChatMessage, ChatRequest, ResponseFormat, Sampling, Tool, ToolChoice

DOC = Path(__file__).resolve().parents[2] / "docs" / "engines.md"


def _request(**fields: object) -> ChatRequest:
    return ChatRequest(
        request_id="r1",
        model="m",
        deadline_ms=now_ms() + 1000,
        messages=(ChatMessage(role="user", content="hi"),),
        **fields,  # type: ignore[arg-type]
    )


def _doc_table() -> dict[str, dict[str, str]]:
    """docs/engines.md's field table: field -> engine -> its cell."""
    text = DOC.read_text()
    section = text[text.index("## OpenAI fields by engine") :]
    rows = [line for line in section.splitlines() if line.startswith("|")]
    header = [c.strip().strip("`") for c in rows[0].strip("|").split("|")]
    table: dict[str, dict[str, str]] = {}
    for row in rows[2:]:
        cells = [c.strip() for c in row.strip("|").split("|")]
        table[cells[0].strip("`")] = dict(zip(header[1:], cells[1:], strict=True))
    return table


def test_the_doc_table_is_the_code_table() -> None:
    table = _doc_table()
    assert set(table) == set(ENGINE_FIELD_NAMES) | GATEWAY_FIELDS
    for field, cells in table.items():
        assert set(cells) == set(ENGINE_FIELDS), field
        for engine, cell in cells.items():
            honoured = field in GATEWAY_FIELDS or field in ENGINE_FIELDS[engine]
            assert re.match(r"^(yes|gateway)\b" if honoured else r"^400\b", cell), (field, engine, cell)


def test_plain_sampling_uses_no_field_beyond_the_basics() -> None:
    assert fields_in_use(_request()) == set()


def test_fields_in_use_are_those_set_off_their_neutral_value() -> None:
    request = _request(
        sampling=Sampling(presence_penalty=0.5, logprobs=True, top_logprobs=2, stop=("x",)),
        tools=(Tool(name="f"),),
        tool_choice=ToolChoice(mode="required"),
        response_format=ResponseFormat(type="json_object"),
    )
    used = fields_in_use(request)
    assert {"presence_penalty", "logprobs", "top_logprobs", "stop", "tools", "response_format"} <= used
    assert "frequency_penalty" not in used and "seed" not in used


def test_an_engine_that_cannot_call_tools_refuses_them_naming_field_and_model() -> None:
    request = _request(tools=(Tool(name="f"),))
    with pytest.raises(InvalidRequest) as refused:
        check_fields("vllm", request)
    assert refused.value.param == "tools" and "`m`" in refused.value.message and "vllm" in refused.value.message
    check_fields("llama_cpp", request)  # served: no refusal


def test_an_unknown_engine_honours_only_what_the_gateway_serves() -> None:
    assert unhonoured("no-such-engine", ["n", "user", "seed"]) == ["seed"]
