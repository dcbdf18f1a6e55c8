"""Request limits and the optional API key, as plain ASGI middleware (cheap, before parsing)."""

from __future__ import annotations

import json
import secrets

from starlette.exceptions import HTTPException

from lmlab.serve.protocol import ErrorDetail, ErrorResponse


async def _send_error(send, status: int, message: str, code: str, type: str) -> None:
    body = ErrorResponse(error=ErrorDetail(message=message, type=type, code=code))
    data = json.dumps(body.model_dump()).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": data})


class TooLarge(HTTPException):
    """A body that grew past the limit while being read (sent without Content-Length).

    An HTTPException, because FastAPI turns any other error raised while it reads the body
    into a 400 "error parsing the body"; this one reaches the error handlers as a 413.
    """

    def __init__(self, max_body_bytes: int) -> None:
        super().__init__(413, f"request body larger than {max_body_bytes} bytes")


class LimitsMiddleware:
    """Refuse bodies over `max_body_bytes` (413) and, with a key set, requests without it (401)."""

    def __init__(self, app, *, max_body_bytes: int, api_key: str | None) -> None:
        self.app, self.max_body_bytes, self.api_key = app, max_body_bytes, api_key

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        if self.api_key and scope["path"].startswith("/v1"):
            # as bytes: compare_digest refuses str with non-ASCII characters (a TypeError)
            given = headers.get(b"authorization", b"")
            if not secrets.compare_digest(given, f"Bearer {self.api_key}".encode()):
                return await _send_error(
                    send,
                    401,
                    "Incorrect or missing API key (send: Authorization: Bearer KEY)",
                    "invalid_api_key",
                    "invalid_request_error",
                )
        declared = headers.get(b"content-length")
        if declared and declared.isdigit() and int(declared) > self.max_body_bytes:
            return await self._too_large(send)
        seen = 0

        async def limited_receive():
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.max_body_bytes:
                raise TooLarge(self.max_body_bytes)
            return message

        try:
            await self.app(scope, limited_receive, send)
        except TooLarge:  # raised where no error handler catches it
            await self._too_large(send)

    async def _too_large(self, send) -> None:
        error = TooLarge(self.max_body_bytes)
        await _send_error(send, 413, error.detail, "request_too_large", "invalid_request_error")
