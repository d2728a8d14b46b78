"""The published OpenAPI document is the resolver's own, and the template serves exactly its routes."""

from __future__ import annotations

import json
import re

import pytest
from openapi_spec_validator import validate

from herald.api.resolver import openapi_document, render_openapi
from tests.support.aws import REPO_ROOT, template

pytestmark = pytest.mark.unit

OPENAPI_FILE = REPO_ROOT / "schemas" / "openapi.json"
METHODS = {"get", "put", "post", "delete", "patch"}


def template_routes(function: str) -> set[tuple[str, str]]:
    events = template()["Resources"][function]["Properties"]["Events"]
    return {
        (event["Properties"]["Method"].upper(), event["Properties"]["Path"])
        for event in events.values()
        if event["Type"] == "HttpApi"
    }


def test_the_published_openapi_document_is_current() -> None:
    assert OPENAPI_FILE.read_text(encoding="utf-8") == render_openapi(), (
        "schemas/openapi.json is stale: run `make schema` and commit it"
    )


def test_the_document_is_valid_openapi_3_1() -> None:
    validate(openapi_document())  # raises OpenAPIValidationError with the first problem


def test_the_template_routes_exactly_what_the_resolver_serves() -> None:
    """A route in the resolver but not the template would 404 at API Gateway; one in the template but
    not the resolver would reach the function and 404 there."""
    document = openapi_document()
    served = {
        (method.upper(), path)
        for path, operations in document["paths"].items()
        for method in operations
        if method in METHODS
    }
    # the HTTP API's functions: the API's, the Twilio webhook's own (decision 035), the operators'
    # (decision 038)
    assert served == (
        template_routes("ApiFunction")
        | template_routes("TwilioWebhookFunction")
        | template_routes("OperatorFunction")
    )


def test_every_operation_documents_the_one_error_shape_and_needs_a_token() -> None:
    document = openapi_document()
    assert document["security"] == [{"jwt": []}]
    assert document["components"]["securitySchemes"]["jwt"]["scheme"] == "bearer"
    error = document["components"]["schemas"]["ErrorResponse"]
    assert error["required"] == ["error"]
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            for status in ("401", "404", "422"):
                schema = operation["responses"][status]["content"]["application/json"]["schema"]
                assert schema == {"$ref": "#/components/schemas/ErrorResponse"}, (method, path, status)
            assert {"200", "202", "204"} & set(operation["responses"]), (method, path)
    assert "HTTPValidationError" not in json.dumps(document)


def test_path_parameters_are_named_alike_in_the_template_and_the_resolver() -> None:
    for _method, path in template_routes("ApiFunction") | template_routes("OperatorFunction"):
        assert re.fullmatch(r"(/[a-z0-9-]+|/\{[a-z_]+\})+", path), path


def test_exactly_the_routes_without_a_jwt_in_the_template_are_documented_without_one() -> None:
    resources = template()["Resources"]
    events = [
        event
        for function in ("ApiFunction", "TwilioWebhookFunction", "OperatorFunction")
        for event in resources[function]["Properties"]["Events"].values()
    ]
    open_in_template = {
        (e["Properties"]["Method"].upper(), e["Properties"]["Path"])
        for e in events
        if e["Type"] == "HttpApi" and (e["Properties"].get("Auth") or {}).get("Authorizer") == "NONE"
    }
    document = openapi_document()
    open_in_document = {
        (method.upper(), path)
        for path, operations in document["paths"].items()
        for method, operation in operations.items()
        if operation.get("security") == []
    }

    # the providers' signed webhooks (decisions 018, 023) and the signed unsubscribe link (024)
    webhooks = {("POST", f"/v1/webhooks/{provider}") for provider in ("pusher", "sendgrid", "twilio")}
    unsubscribe = {("GET", "/v1/unsubscribe"), ("POST", "/v1/unsubscribe")}
    assert open_in_template == open_in_document == webhooks | unsubscribe
