"""Errors in OpenAI's shape: `{"error": {"message", "type", "param", "code"}}`, 4xx for the
client's mistakes (FastAPI's own 422 body never leaves the server), 5xx only for our bugs."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from lmlab.errors import LmlabError
from lmlab.serve.protocol import ErrorDetail, ErrorResponse

log = logging.getLogger("lmlab.serve")


class APIError(Exception):
    """An error to return to the client as it is."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = (
            status,
            message,
            type,
            param,
            code,
        )


def error_response(
    status: int, message: str, type: str = "invalid_request_error", param=None, code=None
) -> JSONResponse:
    body = ErrorResponse(error=ErrorDetail(message=message, type=type, param=param, code=code))
    return JSONResponse(body.model_dump(), status_code=status)


def _validation_message(error: dict) -> tuple[str, str | None]:
    loc = [str(part) for part in error.get("loc", ()) if part != "body"]
    param = ".".join(loc) or None
    if error.get("type") == "json_invalid":
        return "the request body is not valid JSON", None
    return (f"{param}: {error.get('msg')}" if param else str(error.get("msg"))), param


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(APIError)
    async def _api_error(request: Request, e: APIError) -> JSONResponse:
        return error_response(e.status, e.message, e.type, e.param, e.code)

    @app.exception_handler(LmlabError)
    async def _lmlab_error(request: Request, e: LmlabError) -> JSONResponse:
        return error_response(400, str(e), param=e.param)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, e: RequestValidationError) -> JSONResponse:
        message, param = _validation_message(e.errors()[0]) if e.errors() else ("invalid", None)
        return error_response(400, message, param=param)

    @app.exception_handler(HTTPException)
    async def _http(request: Request, e: HTTPException) -> JSONResponse:
        codes = {404: "not_found", 405: "method_not_allowed", 413: "request_too_large"}
        code = codes.get(e.status_code)
        return error_response(e.status_code, str(e.detail), code=code)

    @app.exception_handler(Exception)
    async def _bug(request: Request, e: Exception) -> JSONResponse:
        log.exception("internal error")
        return error_response(500, "internal server error", type="server_error")
