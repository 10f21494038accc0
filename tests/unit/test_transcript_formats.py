"""Subtitles from transcript segments, as SubRip and WebVTT write their cues."""

from __future__ import annotations

from services.gateway.routes.transcriptions import subtitles

SEGMENTS = [{"start": 0.0, "end": 2.5, "text": " Hello"}, {"start": 2.5, "end": 3661.042, "text": " there "}]


def test_srt_numbers_its_cues_with_a_comma_before_milliseconds() -> None:
    assert subtitles(SEGMENTS, vtt=False) == (
        "1\n00:00:00,000 --> 00:00:02,500\nHello\n\n2\n00:00:02,500 --> 01:01:01,042\nthere\n"
    )


def test_vtt_has_its_header_and_a_dot_before_milliseconds() -> None:
    assert subtitles(SEGMENTS, vtt=True) == (
        "WEBVTT\n\n00:00:00.000 --> 00:00:02.500\nHello\n\n00:00:02.500 --> 01:01:01.042\nthere\n"
    )
