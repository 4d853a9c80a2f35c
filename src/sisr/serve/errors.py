"""The server's error answers: JSON ``{"error": {"status", "code", "message"}}``."""

from __future__ import annotations

import logging

from fastapi.responses import JSONResponse

from sisr.serve.jobs import QueueFull, storage_full

log = logging.getLogger("sisr.serve")


class ApiError(Exception):
    """An expected failure answered as JSON with ``status``."""

    def __init__(
        self, status: int, code: str, message: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}


def error_response(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    body = {"error": {"status": status, "code": code, "message": message}}
    return JSONResponse(body, status_code=status, headers=headers)


STATUS_CODES = {
    400: "bad_request",
    401: "unauthorized",
    404: "not_found",
    405: "method_not_allowed",
    409: "not_ready",
    413: "too_large",
    415: "unsupported_media_type",
    422: "invalid",
    500: "internal",
    503: "busy",
    504: "timeout",
    507: "out_of_memory",
}


def no_room(exc: OSError) -> BaseException:
    """507 for a full disk while storing an upload (logged: the folder is the operator's
    business, not the client's); any other OSError stays a bug (500)."""
    if not storage_full(exc):
        return exc
    log.warning("storing an upload: %s", exc)
    return ApiError(
        507,
        "insufficient_storage",
        "the server has no room to store the upload right now; retry later",
    )


def busy(full: QueueFull) -> ApiError:
    return ApiError(
        503,
        "busy",
        f"the server is busy ({full.reason}); retry in {full.retry_after} s",
        {"Retry-After": str(full.retry_after)},
    )


__all__ = ["STATUS_CODES", "ApiError", "busy", "error_response", "no_room"]
