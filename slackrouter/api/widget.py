"""`GET /widget.js`: the embeddable chat widget, one static file served with an ETag."""

from __future__ import annotations

import gzip
import hashlib
from dataclasses import dataclass
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import Response

WIDGET_JS = Path(__file__).parent / "static" / "widget.js"
# Sites embed a fixed URL, so a new version must reach them soon: browsers reuse their copy for
# five minutes, then revalidate it cheaply with the ETag.
CACHE_CONTROL = "public, max-age=300"


@dataclass(frozen=True)
class StaticAsset:
    body: bytes
    gzipped: bytes
    etag: str

    @classmethod
    def read(cls, path: Path) -> StaticAsset:
        body = path.read_bytes()
        digest = hashlib.sha256(body).hexdigest()[:20]
        # Weak, since the gzipped and plain bodies are the same script.
        return cls(body=body, gzipped=gzip.compress(body, mtime=0), etag=f'W/"{digest}"')

    def matches(self, if_none_match: str | None) -> bool:
        tags = {t.strip().removeprefix("W/") for t in (if_none_match or "").split(",")}
        return "*" in tags or self.etag.removeprefix("W/") in tags


def widget_router() -> APIRouter:
    router = APIRouter()
    widget = StaticAsset.read(WIDGET_JS)

    @router.get("/widget.js", include_in_schema=False)
    async def widget_js(request: Request) -> Response:
        headers = {
            "Cache-Control": CACHE_CONTROL,
            "ETag": widget.etag,
            "Vary": "Accept-Encoding",
            "Cross-Origin-Resource-Policy": "cross-origin",
        }
        if widget.matches(request.headers.get("if-none-match")):
            return Response(status_code=304, headers=headers)
        media_type = "text/javascript; charset=utf-8"
        if "gzip" in request.headers.get("accept-encoding", ""):
            headers["Content-Encoding"] = "gzip"
            return Response(widget.gzipped, media_type=media_type, headers=headers)
        return Response(widget.body, media_type=media_type, headers=headers)

    return router
