"""Images in chat messages: decoded, checked and normalised here, so a worker only ever sees a valid
image of bounded size. A bad one is the client's 400, before anything reaches the bus."""

from __future__ import annotations

import base64
import binascii
import io
import re
from urllib.parse import urlparse

from contracts.errors import InvalidRequest
from services.gateway.files import Files

_DATA_URL = re.compile(
    r"^data:(?P<type>image/[\w.+-]+)?(?P<params>(;[\w-]+=[\w.-]+)*)(?P<b64>;base64)?,(?P<data>.*)$", re.DOTALL
)
KEPT_FORMATS = {"PNG": "image/png", "JPEG": "image/jpeg"}  # passed on as sent; others become PNG


def check_image(raw: bytes, max_bytes: int, max_side: int) -> str:
    """`raw` as a data URL, if it is a whole, decodable image within the limits; else InvalidRequest."""
    from PIL import Image, UnidentifiedImageError

    if len(raw) > max_bytes:
        raise InvalidRequest(f"an image of {len(raw)} bytes is over the limit of {max_bytes}")
    try:
        with Image.open(io.BytesIO(raw)) as probe:
            probe.verify()  # structure and checksums, without decoding the pixels
        with Image.open(io.BytesIO(raw)) as image:
            if max(image.size) > max_side:
                raise InvalidRequest(f"an image of {image.width}x{image.height} is over {max_side} pixels a side")
            image.load()  # a truncated file fails here
            kind = KEPT_FORMATS.get(image.format or "")
            if kind is None:
                converted = io.BytesIO()
                image.convert("RGB").save(converted, format="PNG")
                raw, kind = converted.getvalue(), "image/png"
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise InvalidRequest(f"not a readable image: {exc}") from None
    return f"data:{kind};base64,{base64.b64encode(raw).decode()}"


def decode_data_url(url: str) -> bytes:
    found = _DATA_URL.match(url)
    if not found or not found.group("b64"):
        raise InvalidRequest("an image data URL must look like data:image/png;base64,...")
    try:
        return base64.b64decode(found.group("data"), validate=True)
    except (binascii.Error, ValueError):
        raise InvalidRequest("the image data URL is not valid base64") from None


async def inline_image(url: str, files: Files, max_bytes: int, max_side: int) -> str:
    """An `image_url` as a checked data URL: a data URL, or a file of this deployment (its
    `/v1/files/<id>` URL or bare id). Other URLs are refused: the gateway fetches nothing from outside."""
    if url.startswith("data:"):
        return check_image(decode_data_url(url), max_bytes, max_side)
    parsed = urlparse(url)
    if parsed.scheme in ("http", "https") and "/v1/files/" not in parsed.path:
        raise InvalidRequest("image_url must be a data URL or a file of this service (/v1/files/<id>)")
    file_id = parsed.path.rsplit("/v1/files/", 1)[-1] if parsed.scheme else url
    content, _ = await files.read(file_id)
    return check_image(content, max_bytes, max_side)
