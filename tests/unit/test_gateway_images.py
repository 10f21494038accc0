"""Images in chat messages are checked in the gateway: what passes, and the clear 400 for the rest."""

from __future__ import annotations

import base64
import io

import pytest
from PIL import Image

from contracts.errors import InvalidRequest
from services.gateway.images import check_image, decode_data_url


def _image(fmt: str, size: tuple[int, int] = (40, 30)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, (200, 30, 30)).save(out, format=fmt)
    return out.getvalue()


def test_png_and_jpeg_pass_unchanged() -> None:
    for fmt, kind in (("PNG", "image/png"), ("JPEG", "image/jpeg")):
        raw = _image(fmt)
        assert check_image(raw, 1 << 20, 2048) == f"data:{kind};base64,{base64.b64encode(raw).decode()}"


def test_other_formats_become_png() -> None:
    url = check_image(_image("BMP"), 1 << 20, 2048)
    assert url.startswith("data:image/png;base64,")
    assert Image.open(io.BytesIO(decode_data_url(url))).size == (40, 30)


@pytest.mark.parametrize(
    ("raw", "limit_bytes", "side", "message"),
    [
        (b"definitely not an image", 1 << 20, 2048, "not a readable image"),
        (_image("PNG")[:60], 1 << 20, 2048, "not a readable image"),
        (_image("PNG"), 100, 2048, "over the limit"),
        (_image("PNG", (300, 20)), 1 << 20, 256, "pixels a side"),
    ],
)
def test_bad_images_are_invalid_requests(raw: bytes, limit_bytes: int, side: int, message: str) -> None:
    with pytest.raises(InvalidRequest, match=message):
        check_image(raw, limit_bytes, side)


@pytest.mark.parametrize("url", ["data:image/png,abc", "data:image/png;base64,@@@", "data:;base64"])
def test_bad_data_urls(url: str) -> None:
    with pytest.raises(InvalidRequest):
        decode_data_url(url)
