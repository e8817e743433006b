"""Who may call the service, and how much they may send: checked before any route runs.

- **Bearer token** (optional): when ``BEHAVE_API_TOKEN`` is set, every request but the health
  and docs routes must carry ``Authorization: Bearer <token>``; otherwise 401 with a JSON body.
  The comparison is constant-time. Unset (the default, for a service on 127.0.0.1), no check.
- **Body size**: a request body over ``BEHAVE_MAX_BODY_BYTES`` (default 16 MiB) is refused with
  413 before the route parses it: by its ``Content-Length`` when it sends one, else while it is
  read here (a chunked upload is buffered up to the limit, then handed on; never past it).

Both answers are JSON ``{"error": "..."}`` naming the setting to change, like the service's
other errors.
"""

from __future__ import annotations

import hmac
import json
import os

__all__ = ["RequestGuard", "OPEN_PATHS", "DEFAULT_MAX_BODY_BYTES"]

TOKEN_ENV = "BEHAVE_API_TOKEN"
MAX_BODY_ENV = "BEHAVE_MAX_BODY_BYTES"
DEFAULT_MAX_BODY_BYTES = 16 * 1024 * 1024
# health probes (load balancers, Kubernetes) and the API description stay open
OPEN_PATHS = frozenset({"/livez", "/readyz", "/healthz", "/metrics", "/docs.json", "/"})
_OPEN_PREFIXES = ("/static_content/",)  # Swagger UI's assets


async def _send_json(send, status: int, payload: dict, headers: list | None = None) -> None:
    body = json.dumps(payload).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *(headers or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class RequestGuard:
    """ASGI middleware: bearer-token check, then the body-size limit."""

    def __init__(self, app, token: str | None = None, max_body_bytes: int | None = None) -> None:
        self.app = app
        token = token if token is not None else os.environ.get(TOKEN_ENV, "")
        self.token = token.encode() if token else None
        limit = max_body_bytes
        if limit is None:
            raw = os.environ.get(MAX_BODY_ENV, "")
            try:
                limit = int(raw) if raw else DEFAULT_MAX_BODY_BYTES
            except ValueError:
                raise ValueError(f"{MAX_BODY_ENV} must be a number of bytes, got {raw!r}") from None
        if limit < 1:
            raise ValueError(f"{MAX_BODY_ENV} must be >= 1, got {limit}")
        self.max_body = limit

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        if any(ord(ch) < 32 or ord(ch) == 127 for ch in path):
            # no route has a line break or control character; answered here because the
            # router's catch-all cannot match one (its pattern stops at a line break) and
            # would answer in plain text
            await _send_json(send, 404, {"error": f"no route {path!r}: see /docs.json"})
            return
        if self.token is not None and not (
            path in OPEN_PATHS or path.startswith(_OPEN_PREFIXES) or self._authorized(scope)
        ):
            await _send_json(
                send,
                401,
                {"error": f"missing or wrong bearer token: send 'Authorization: Bearer <token>' "
                 f"with the token the service was started with ({TOKEN_ENV})"},
                [(b"www-authenticate", b"Bearer")],
            )  # fmt: skip
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_body:
            await self._too_large(send, declared)
            return
        if declared is None:  # chunked: read it here, up to the limit, then replay it
            body, too_large = await _read_body(receive, self.max_body)
            if too_large:
                await self._too_large(send, None)
                return
            receive = _replay(body, receive)
        await self.app(scope, receive, send)

    def _authorized(self, scope) -> bool:
        for name, value in scope.get("headers", []):
            if name == b"authorization":
                scheme, _, credential = value.partition(b" ")
                return scheme.lower() == b"bearer" and hmac.compare_digest(
                    credential.strip(), self.token
                )
        return False

    async def _too_large(self, send, size: int | None) -> None:
        sent = f"{size} bytes" if size is not None else "more"
        await _send_json(
            send,
            413,
            {"error": f"request body too large: {sent} over the limit of {self.max_body} bytes "
             f"({MAX_BODY_ENV}); send fewer items per request"},
        )  # fmt: skip


def _content_length(scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def _read_body(receive, limit: int) -> tuple[bytes, bool]:
    """The whole request body, or (partial, True) as soon as it exceeds ``limit``."""
    chunks, total = [], 0
    while True:
        message = await receive()
        if message["type"] != "http.request":  # the client went away
            return b"".join(chunks), False
        chunk = message.get("body", b"")
        total += len(chunk)
        if total > limit:
            return b"", True
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks), False


def _replay(body: bytes, receive):
    sent = False

    async def replayed():
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()  # e.g. http.disconnect

    return replayed
