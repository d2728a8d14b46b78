"""One error shape for every answer the API function gives: `{"error": {"code", "message", "details"}}`.

Route code raises `ApiError` (or a powertools `ServiceError`); request validation errors become 422
with pydantic's field-level errors, stripped of the input values they would echo back.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response, content_types
from aws_lambda_powertools.event_handler.exceptions import NotFoundError, ServiceError
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field

from herald.devices import Contended

logger = Logger(child=True)


class ErrorDetail(BaseModel):
    model_config = ConfigDict(extra="forbid")

    code: str = Field(description="stable, machine-readable: validation_error, unauthorized, not_found ...")
    message: str = Field(description="for developers; not localized")
    details: list[dict[str, Any]] = Field(
        default_factory=list, description="field-level problems: `loc` (where), `type`, `msg`"
    )


class ErrorResponse(BaseModel):
    model_config = ConfigDict(extra="forbid")

    error: ErrorDetail


class ApiError(Exception):
    status = 400
    code = "bad_request"

    def __init__(self, message: str, details: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or []


class Unauthorized(ApiError):
    status = 401
    code = "unauthorized"


class Forbidden(ApiError):
    """Only where no stored resource is named (a Pusher channel name): ids answer NotFound."""

    status = 403
    code = "forbidden"


class Unavailable(ApiError):
    """A dependency cannot be reached right now (e.g. a provider secret): the caller retries."""

    status = 503
    code = "unavailable"


class NotFound(ApiError):
    """Also the answer for another person's ids: 404, never 403 (which would confirm they exist)."""

    status = 404
    code = "not_found"


class Conflict(ApiError):
    status = 409
    code = "conflict"


class Unprocessable(ApiError):
    status = 422
    code = "validation_error"


def error_response(
    status: int, code: str, message: str, details: list[dict[str, Any]] | None = None
) -> Response:
    body = ErrorResponse(error=ErrorDetail(code=code, message=message, details=details or []))
    return Response(status, content_types.APPLICATION_JSON, body.model_dump_json())


_SERVICE_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    500: "internal",
}


def register(app: APIGatewayHttpResolver) -> None:
    """Install the handlers that turn every error into the one shape."""

    @app.exception_handler(RequestValidationError)
    def _invalid(error: RequestValidationError) -> Response:
        return error_response(422, "validation_error", "the request is not valid", _strip(error.errors()))

    @app.exception_handler(ApiError)
    def _api_error(error: ApiError) -> Response:
        return error_response(error.status, error.code, error.message, error.details)

    @app.exception_handler(NotFoundError)
    def _no_route(error: NotFoundError) -> Response:
        return error_response(404, "not_found", "no such route")

    @app.exception_handler(ServiceError)
    def _service_error(error: ServiceError) -> Response:
        return error_response(error.status_code, _SERVICE_CODES.get(error.status_code, "error"), error.msg)

    @app.exception_handler(Contended)
    def _contended(error: Contended) -> Response:
        return error_response(409, "conflict", "changed concurrently by another request: retry")

    @app.exception_handler(Exception)
    def _unexpected(error: Exception) -> Response:
        # Last resort (an AWS error, a bug): logged with its trace, answered in the one shape
        # without internals. Retrying is safe: every route is idempotent.
        logger.exception("unexpected error")
        return error_response(500, "internal", "an unexpected error occurred: retry later")


def _strip(errors: Any) -> list[dict[str, Any]]:
    """pydantic's errors without `input`, `ctx` values and `url` (they would echo request data)."""
    out: list[dict[str, Any]] = []
    for error in errors:
        out.append(
            {
                "loc": [str(part) for part in error.get("loc", ())],
                "type": error.get("type"),
                "msg": error.get("msg"),
            }
        )
    return out


__all__ = [
    "ApiError",
    "ErrorResponse",
    "Forbidden",
    "NotFound",
    "Unauthorized",
    "Unavailable",
    "Unprocessable",
    "error_response",
    "register",
]
