"""The HTTP API's resolvers: every router under `/v1`, one error shape, and the OpenAPI document of
the whole HTTP API generated from the API function's, the Twilio webhook function's and the
operator function's routers (`python -m herald.api.resolver` writes `schemas/openapi.json`)."""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver

from herald.api import errors
from herald.api.errors import ErrorResponse

PREFIX = "/v1"
# Each function's routers, by module of herald.api: a function imports only its own (the operator
# and Twilio functions never load the app API's routers, nor it theirs).
API_ROUTERS = (
    "inbox",
    "preferences",
    "topics",
    "contacts",
    "devices",
    "export",
    "privacy",
    "pusher_auth",
    "pusher_webhooks",
    "sendgrid_webhooks",
    "unsubscribe",
)
# the Twilio webhook's function (decision 035): same HTTP API, same error shape, its own package
TWILIO_ROUTERS = ("twilio_webhooks",)
# the operator function (decision 038): `/v1/admin/*` behind the admin scope
OPERATOR_ROUTERS = ("admin", "console")
TITLE = "Herald app API"
VERSION = "1.0.0"
OPENAPI_PATH = Path("schemas/openapi.json")

WEBHOOKS_TAG = "webhooks"
UNSUBSCRIBE_TAG = "unsubscribe"  # the signed link's token, no JWT (Auth: NONE, decision 024)
_WEBHOOK_401 = "The provider's signature, key or timestamp does not check out: nothing was written."
_ERRORS = {
    "401": "No token, or one API Gateway's JWT authorizer refused. The authorizer's own answer is "
    '`{"message": "Unauthorized"}`; the function\'s is the error shape below.',
    "404": "Not found: an unknown route, or an id the caller does not own (another person's ids answer "
    "404 like unknown ones, never 403).",
    "422": "The request is not valid: `details` lists each field's problem.",
}


def build_resolver(routers: tuple[str, ...] = API_ROUTERS) -> APIGatewayHttpResolver:
    """One resolver with the routers of these `herald.api` modules, under `/v1`."""
    app = APIGatewayHttpResolver(enable_validation=True)
    for name in routers:
        app.include_router(importlib.import_module(f"herald.api.{name}").router, prefix=PREFIX)
    errors.register(app)
    return app


def openapi_document(app: APIGatewayHttpResolver | None = None) -> dict[str, Any]:
    """The OpenAPI 3.1 document, with every operation's errors in the one error shape."""
    # powertools' OpenAPI document models (~130 pydantic models) are for this offline document
    # only: the function's cold start does not build them (decision 031).
    from aws_lambda_powertools.event_handler.openapi.models import HTTPBearer, Server

    app = app or build_resolver(API_ROUTERS + TWILIO_ROUTERS + OPERATOR_ROUTERS)
    document = json.loads(
        app.get_openapi_json_schema(
            title=TITLE,
            version=VERSION,
            description="The signed-in person's inbox, preferences, contacts and devices (JWT bearer).",
            servers=[Server(url="https://{api-id}.execute-api.{region}.amazonaws.com")],
            security_schemes={"jwt": HTTPBearer(bearerFormat="JWT")},
            security=[{"jwt": []}],
        )
    )
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    error_schema = ErrorResponse.model_json_schema(ref_template="#/components/schemas/{model}")
    schemas.update(error_schema.pop("$defs", {}))
    schemas["ErrorResponse"] = error_schema
    for name in ("HTTPValidationError", "ValidationError", "ResponseValidationError"):
        schemas.pop(name, None)
    reference = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}}
    for operations in document.get("paths", {}).values():
        for operation in operations.values():
            responses = operation.setdefault("responses", {})
            for status, description in _ERRORS.items():
                responses[status] = {"description": description, "content": reference}
            if WEBHOOKS_TAG in operation.get("tags", []):
                operation["security"] = []  # signed by the provider, no JWT (Auth: NONE in the template)
                responses["401"] = {"description": _WEBHOOK_401, "content": reference}
            if UNSUBSCRIBE_TAG in operation.get("tags", []):
                operation["security"] = []
    return document


def render_openapi() -> str:
    return json.dumps(openapi_document(), indent=2, sort_keys=True) + "\n"


def main(argv: list[str] | None = None) -> int:
    target = Path((argv or sys.argv[1:] or [str(OPENAPI_PATH)])[0])
    target.write_text(render_openapi(), encoding="utf-8")
    print(f"wrote {target}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
