"""Files workers put in the `artifacts` object store, and the signed URLs that let a browser or an
`<img>` tag fetch one without the API key (valid until they expire, for this gateway's secret)."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from urllib.parse import urlencode

from fastapi import Request
from nats.js.errors import BadObjectMetaError, NotFoundError
from nats.js.object_store import ObjectStore

from contracts import streams
from contracts.errors import ModelNotFound
from services.common.bus import Bus
from services.gateway.auth import check_key
from services.gateway.intake import REQUEST_ID

FILE_ID = re.compile(REQUEST_ID.pattern + r"(\.[a-z0-9]{1,8})?")  # workers name files <request>-<attempt>-<n>.<ext>


class FileNotFound(ModelNotFound):
    """404 like an unknown model: the OpenAI shape has one not-found kind."""


class Files:
    def __init__(self, bus: Bus, secret: str = "", url_ttl_s: int = 3600) -> None:
        self.bus = bus
        self._secret = (secret or secrets.token_hex(32)).encode()
        self.url_ttl_s = url_ttl_s
        self._store: ObjectStore | None = None

    def _signature(self, file_id: str, expires: int) -> str:
        return hmac.new(self._secret, f"{file_id}:{expires}".encode(), hashlib.sha256).hexdigest()

    def url(self, base_url: str, file_id: str) -> str:
        expires = int(time.time()) + self.url_ttl_s
        query = urlencode({"expires": expires, "sig": self._signature(file_id, expires)})
        return f"{base_url.rstrip('/')}/v1/files/{file_id}?{query}"

    def authorize(self, request: Request, file_id: str, expires: int | None, sig: str | None) -> None:
        """A valid, unexpired signature, or else the API key as on every other route."""
        if (
            expires is not None
            and sig
            and expires >= time.time()
            and hmac.compare_digest(sig, self._signature(file_id, expires))
        ):
            return
        check_key(request)

    async def read(self, file_id: str) -> tuple[bytes, str]:
        """The file's bytes and content type."""
        if not FILE_ID.fullmatch(file_id):  # never a name the object store would refuse
            raise FileNotFound(f"No file `{file_id[:80]}`")
        if self._store is None:  # looked up once, not on every download
            self._store = await self.bus.js.object_store(streams.OBJ_ARTIFACTS)
        try:
            result = await self._store.get(file_id)
        except (NotFoundError, BadObjectMetaError, ValueError):
            raise FileNotFound(f"No file `{file_id}`") from None
        info = result.info
        return result.data or b"", (info.description if info and info.description else "application/octet-stream")
