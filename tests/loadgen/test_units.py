"""The load generator's pure parts: statistics, shapes, the class mix, prompt sources, the target
check, the vLLM-shaped result, the comparison and the SLO bisection."""

from __future__ import annotations

import json
import random
import statistics
import struct
from pathlib import Path
from typing import Any

import pytest

from loadgen.prompts import prompts, read_sharegpt
from loadgen.record import Record
from loadgen.report import compare, vllm_result
from loadgen.search import slo_search
from loadgen.shapes import arrival_times, class_sequence, gamma_gaps, ramp_time
from loadgen.spec import PromptSource, RequestClass, RunSpec, Shape, Slo, TargetNotAllowed, check_target
from loadgen.stats import distribution, is_good, meets_slo, percentile, summarize, throughput_series, tpot, wav_seconds


def text_record(start: float, ttft: float, itls: list[float], ok: bool = True, cls: str = "chat") -> Record:
    end = start + ttft + sum(itls)
    return Record(
        cls=cls, kind="chat", seq=0, start=start, end=end, status=200 if ok else 503,
        error="" if ok else "no_live_worker", ttft=ttft, itls=itls, output_tokens=len(itls) + 1,
    )  # fmt: skip


def test_percentile_interpolates_as_numpy() -> None:
    values = [1.0, 2.0, 3.0, 4.0, 10.0]
    assert percentile(values, 50) == 3.0
    assert percentile(values, 90) == pytest.approx(7.6)
    assert percentile([5.0], 99) == 5.0
    assert distribution([0.010, 0.020, 0.030])["mean"] == pytest.approx(20.0)


def test_tpot_and_goodput_against_slo() -> None:
    fast = text_record(0.0, 0.1, [0.01] * 9)
    slow = text_record(0.0, 0.5, [0.05] * 9)
    assert tpot(fast) == pytest.approx(0.01)
    slo = Slo(ttft_ms=200, tpot_ms=20)
    assert is_good(fast, slo) and not is_good(slow, slo)
    assert not is_good(text_record(0.0, 0.1, [0.01], ok=False), Slo())
    assert is_good(slow, Slo(itl_ms=60)) and not is_good(slow, Slo(itl_ms=40))


def test_summary_leaves_warmup_out_and_counts_errors_by_code() -> None:
    warm = text_record(0.0, 5.0, [0.01])
    warm.warmup = True
    records = [warm, text_record(10.0, 0.1, [0.02] * 4), text_record(11.0, 0.3, [0.02] * 4)]
    records.append(text_record(11.5, 0.1, [], ok=False))
    summary = summarize(records, {"chat": ("chat", Slo(ttft_ms=200))})
    chat = summary["classes"]["chat"]
    assert chat["requests"] == 3 and chat["completed"] == 2 and chat["errors"] == {"no_live_worker": 1}
    assert chat["ttft_ms"]["p50"] == pytest.approx(200.0)
    assert chat["output_tokens"] == 10
    assert chat["duration_s"] == pytest.approx(11.6 - 10.0)  # from the first start to the last end, failed too
    assert chat["goodput_per_s"] == pytest.approx(1 / 1.6)
    assert summary["overall"]["warmup_requests"] == 1
    assert not meets_slo(chat, Slo(ttft_ms=1000))  # one failed request
    chat_ok = summarize(records[1:3], {"chat": ("chat", Slo())})["classes"]["chat"]
    assert meets_slo(chat_ok, Slo(ttft_ms=300, quantile=99)) and not meets_slo(chat_ok, Slo(ttft_ms=250))


def test_wav_seconds_from_a_streamed_header() -> None:
    fmt = struct.pack("<HHIIHH", 1, 1, 22050, 44100, 2, 16)
    header = b"RIFF\xff\xff\xff\xffWAVEfmt " + struct.pack("<I", 16) + fmt + b"data\xff\xff\xff\xff"
    assert wav_seconds(header + b"\0" * 44100) == pytest.approx(1.0)
    assert wav_seconds(b"ID3 not a wav") is None


def test_throughput_series_buckets_by_end_time() -> None:
    records = [text_record(0.0, 0.1, [0.1]), text_record(0.5, 0.4, [0.2]), text_record(1.0, 0.5, [0.1])]
    series = throughput_series(records, 1.0)
    assert [p["requests_per_s"] for p in series] == [1.0, 2.0]
    assert [p["output_tokens_per_s"] for p in series] == [2.0, 4.0]


def test_class_sequence_holds_ratios_and_interleaves() -> None:
    order = class_sequence([3, 1, 2], 60)
    assert [order.count(i) for i in range(3)] == [30, 10, 20]
    assert order[:6].count(0) == 3 and len(set(order[:6])) == 3
    assert class_sequence([1], 3) == [0, 0, 0]


def test_gamma_gaps_mean_and_burstiness() -> None:
    poisson = gamma_gaps(random.Random(1), 10.0, 1.0, 20000)
    bursty = gamma_gaps(random.Random(1), 10.0, 0.25, 20000)
    assert statistics.fmean(poisson) == pytest.approx(0.1, rel=0.03)
    assert statistics.fmean(bursty) == pytest.approx(0.1, rel=0.05)
    # coefficient of variation is 1/sqrt(shape): 1 for Poisson, 2 for burstiness 0.25
    assert statistics.pstdev(poisson) / statistics.fmean(poisson) == pytest.approx(1.0, rel=0.05)
    assert statistics.pstdev(bursty) / statistics.fmean(bursty) == pytest.approx(2.0, rel=0.08)


def test_ramp_inverts_the_cumulative_rate() -> None:
    # 1/s to 3/s over 10 s: L(t) = t + t^2/10, L(10) = 20, then 3/s
    assert ramp_time(0.0, 1.0, 3.0, 10.0) == 0.0
    assert ramp_time(2.0 + 4.0 / 10, 1.0, 3.0, 10.0) == pytest.approx(2.0)
    assert ramp_time(20.0, 1.0, 3.0, 10.0) == pytest.approx(10.0)
    assert ramp_time(26.0, 1.0, 3.0, 10.0) == pytest.approx(12.0)
    times = arrival_times(Shape(kind="ramp", rate=2.0, end_rate=20.0), 2000, 100.0, seed=3)
    first, last = sum(t < 10 for t in times), sum(80 <= t < 90 for t in times)
    assert first < last / 3  # about 29 against about 173
    assert times == sorted(times)


def test_target_must_be_loopback_or_named() -> None:
    check_target("http://127.0.0.1:8000", ())
    check_target("http://localhost:8000", ())
    check_target("http://[::1]:8000", ())
    with pytest.raises(TargetNotAllowed):
        check_target("http://10.0.0.7:8000", ())
    check_target("http://10.0.0.7:8000", ("10.0.0.7",))
    with pytest.raises(TargetNotAllowed):
        check_target("file:///etc/passwd", ())


def test_prompt_sources(tmp_path: Path) -> None:
    lengths = {len(p.split()) for p, _ in zip(prompts(PromptSource(tokens=17), 0), range(5), strict=False)}
    assert lengths == {17}
    jsonl = tmp_path / "p.jsonl"
    jsonl.write_text('{"prompt": "one"}\n\n{"prompt": "two"}\n')
    assert [p for p, _ in zip(prompts(PromptSource(source="jsonl", path=jsonl), 0), range(3), strict=False)] == [
        "one", "two", "one",
    ]  # fmt: skip
    share = tmp_path / "s.json"
    convo = [{"from": "human", "value": "hi there"}, {"from": "gpt", "value": "hello"}]
    share.write_text(json.dumps([{"conversations": convo}, {"conversations": []}]))
    assert read_sharegpt(share) == ["hi there"]
    with pytest.raises(ValueError, match="needs a path"):
        PromptSource(source="jsonl")


def test_vllm_result_shape() -> None:
    records = [text_record(0.0, 0.1, [0.01] * 3), text_record(0.1, 0.2, [0.02] * 3), text_record(0.2, 0, [], ok=False)]
    cls = RequestClass(name="chat", kind="chat", model="m")
    result = vllm_result(records, cls, Shape(kind="concurrency", concurrency=4).model_dump(), goodput=1.5)
    for key in ("ttfts", "itls", "input_lens", "output_lens", "errors", "request_throughput", "output_throughput"):
        assert key in result
    for metric in ("ttft", "tpot", "itl", "e2el"):
        assert {f"mean_{metric}_ms", f"median_{metric}_ms", f"std_{metric}_ms", f"p99_{metric}_ms"} <= set(result)
    assert result["completed"] == 2 and result["failed"] == 1 and result["max_concurrency"] == 4
    assert result["ttfts"] == [0.1, 0.2, 0.0] and result["errors"] == ["", "", "no_live_worker"]
    assert result["median_ttft_ms"] == pytest.approx(150.0)


def test_compare_gives_change_per_figure() -> None:
    def summary(p50: float) -> dict[str, Any]:
        chat = {"completed": 10, "failed": 0, "requests_per_s": 2.0, "ttft_ms": {"n": 10, "p50": p50, "p99": 2 * p50}}
        return {"classes": {"chat": chat}, "overall": {"completed": 10, "failed": 0, "requests_per_s": 2.0}}

    rows = {(r["class"], r["figure"]): r for r in compare(summary(100.0), summary(150.0))}
    assert rows[("chat", "ttft_ms.p50")]["change_pct"] == pytest.approx(50.0)
    assert rows[("chat", "requests_per_s")]["change_pct"] == 0.0


async def test_slo_search_bisects_to_the_boundary() -> None:
    """A server whose TTFT p99 is 100 ms per request/s: with a 500 ms target the boundary is 5/s."""
    spec = RunSpec(classes=(RequestClass(name="chat", kind="chat", model="m", slo=Slo(ttft_ms=500)),))
    probed: list[float] = []

    async def run_at(at: RunSpec) -> dict[str, Any]:
        load = at.shape.rate if at.shape.kind == "rate" else at.shape.concurrency
        probed.append(load)
        dist = {"n": 10, "p50": 50 * load, "p90": 90 * load, "p99": 100 * load}
        chat = {"completed": 10, "failed": 0, "ttft_ms": dist}
        return {"classes": {"chat": chat}}

    found = await slo_search(spec, "rate", 1.0, 9.0, 6, run_at)
    assert probed[:4] == [1.0, 9.0, 5.0, 7.0]
    assert found["best"] == pytest.approx(5.0)
    assert (await slo_search(spec, "concurrency", 1, 64, 10, run_at))["best"] == 5


def test_example_spec_loads_and_flags_override_it() -> None:
    from loadgen.cli import build_parser, spec_from_args

    path = Path(__file__).parents[2] / "loadgen" / "examples" / "mix.yaml"
    args = build_parser().parse_args(["run", "--spec", str(path), "--rate", "2", "--burstiness", "0.5"])
    spec = spec_from_args(args)
    assert [c.kind for c in spec.classes] == ["chat", "embedding", "image", "speech"]
    assert spec.shape.kind == "rate" and spec.shape.rate == 2 and spec.shape.burstiness == 0.5
    assert spec.requests == 60 and spec.classes[0].slo.ttft_ms == 500
    flags = ["run", "--class", "chat:m:2", "--class", "speech", "--rate", "1", "--end-rate", "4"]
    built = spec_from_args(build_parser().parse_args(flags))
    assert [(c.kind, c.model, c.weight) for c in built.classes] == [("chat", "m", 2.0), ("speech", "espeak", 1.0)]
    assert built.shape.kind == "ramp" and built.shape.end_rate == 4


def test_live_view_shows_each_class() -> None:
    from rich.console import Console

    from loadgen.live import view
    from loadgen.runner import Progress

    progress = Progress(total=4, deadline=60, phase="measure")
    progress.records += [text_record(0.0, 0.1, [0.01] * 3), text_record(0.2, 0.1, [], ok=False)]
    progress.in_flight = {"chat": 2}
    console = Console(record=True, width=140)
    console.print(view(progress, {"chat": "chat", "embed": "embedding"}))
    text = console.export_text()
    assert "measure: 2/4 requests" in text
    chat_row = next(line for line in text.splitlines() if line.startswith("│ chat"))
    assert [cell.strip() for cell in chat_row.split("│")[1:6]] == ["chat", "chat", "1", "1", "2"]
    assert "100.0" in chat_row  # first token p50 in ms


def test_metrics_view_from_scrapes(tmp_path: Path) -> None:
    from loadgen.promview import deltas, parse, summarize, urls_from_scrape_config

    first = parse(
        "# TYPE modalmesh_gateway_http_requests_total counter\n"
        'modalmesh_gateway_http_requests_total{route="/v1/embeddings",method="POST",code="200"} 3\n'
        "# TYPE modalmesh_gateway_in_flight gauge\n"
        'modalmesh_gateway_in_flight{model="m"} 0\n'
        "# TYPE python_gc_objects_collected_total counter\n"
        'python_gc_objects_collected_total{generation="0"} 9\n'
    )
    last = {**first, 'modalmesh_gateway_http_requests_total{code="200",method="POST",route="/v1/embeddings"}': 10.0}
    last['modalmesh_gateway_http_requests_total{code="429",method="POST",route="/v1/embeddings"}'] = 2.0
    assert not any(k.startswith("python_") for k in first)
    assert deltas(first, last) == {
        'modalmesh_gateway_http_requests_total{code="200",method="POST",route="/v1/embeddings"}': 7.0,
        'modalmesh_gateway_http_requests_total{code="429",method="POST",route="/v1/embeddings"}': 2.0,
    }
    busy = {**last, 'modalmesh_gateway_in_flight{model="m"}': 4.0}
    rows = [{"t": 0.0, "url": "u", "values": first}, {"t": 1.0, "url": "u", "values": busy}]
    assert summarize(rows)["u"]["gauge_peaks"] == {"modalmesh_gateway_in_flight": 4.0}
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "scrape_configs:\n"
        "  - {job_name: gateway, static_configs: [{targets: ['127.0.0.1:8000']}]}\n"
        "  - {job_name: scheduler, static_configs: [{targets: ['127.0.0.1:9102']}]}\n"
        "  - {job_name: worker-llm-1, static_configs: [{targets: ['127.0.0.1:9104']}]}\n"
    )
    assert urls_from_scrape_config(config) == ["http://127.0.0.1:8000/metrics", "http://127.0.0.1:9102/metrics"]
