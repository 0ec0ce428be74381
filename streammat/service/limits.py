"""Request bodies are small JSON documents; anything larger is refused before it is read.

An ASGI middleware (not a route check) so the limit holds for every route, and for bodies
sent without a Content-Length (chunked) too: they are counted as they arrive, and only a
body within the limit is handed on.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["BodyLimit", "MAX_BODY_BYTES"]

#: a job or pipeline request is well under 4 KB; 64 KB leaves room and bounds the parser
MAX_BODY_BYTES = 64 * 1024


class BodyLimit:
    """Answer 413 ``{"error": …}`` to requests whose body exceeds ``max_bytes``."""

    def __init__(self, app: Any, max_bytes: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    too_large = int(value) > self.max_bytes
                except ValueError:
                    too_large = True
                if too_large:
                    await self._refuse(send)
                    return
        # read the whole (small) body first, so an oversized one is refused before any route
        # sees it, and a route never meets a half-read body
        messages: list[dict[str, Any]] = []
        seen = 0
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                break  # the client went away
            seen += len(message.get("body", b""))
            if seen > self.max_bytes:
                await self._refuse(send)
                return
            if not message.get("more_body", False):
                break

        async def replay() -> dict[str, Any]:
            return messages.pop(0) if messages else await receive()

        await self.app(scope, replay, send)

    async def _refuse(self, send: Any) -> None:
        body = json.dumps({"error": f"request body larger than {self.max_bytes // 1024} KB"}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": body})
