"""The local HTTP API applies the HttpApi's CorsConfiguration as API Gateway does: it answers
preflights itself (before routes and the JWT authorizer) and puts the configured headers on the
responses to cross-origin requests, so a browser page on another origin (the demo app, an app
embedding Herald) can call it with a bearer token."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests

from local.http_api import LocalHttpApi
from local.sandboxes import SandboxHost
from tests.integration.local.test_http_api import FakeFunctions, _description

pytestmark = pytest.mark.integration

# What samtranslator makes of template.yaml's CorsConfiguration (x-amazon-apigateway-cors)
TEMPLATE_CORS = {
    "allowOrigins": ["*"],
    "allowMethods": ["GET", "POST", "PUT", "DELETE", "OPTIONS"],
    "allowHeaders": ["authorization", "content-type"],
    "maxAge": 600,
}
APP = "http://127.0.0.1:4010"
PREFLIGHT = {
    "Origin": APP,
    "Access-Control-Request-Method": "POST",
    "Access-Control-Request-Headers": "authorization",
}


@pytest.fixture
def serve(sandbox: SandboxHost) -> Iterator[Callable[[dict[str, Any] | None], tuple[str, FakeFunctions]]]:
    servers: list[LocalHttpApi] = []

    def start(cors: dict[str, Any] | None) -> tuple[str, FakeFunctions]:
        functions = FakeFunctions()
        description = _description(sandbox)
        if cors is not None:
            description = dataclasses.replace(description, cors={"HttpApi": cors})
        servers.append(LocalHttpApi(description, functions, port=0).start())
        return servers[-1].url, functions

    yield start
    for server in servers:
        server.stop()


def test_a_preflight_is_answered_by_the_api_without_a_token_or_the_function(serve) -> None:
    url, functions = serve(TEMPLATE_CORS)

    response = requests.options(f"{url}/v1/me/notifications/n1", headers=PREFLIGHT, timeout=5)

    assert response.status_code == 204
    assert response.headers["access-control-allow-origin"] == "*"
    assert response.headers["access-control-allow-methods"] == "GET,POST,PUT,DELETE,OPTIONS"
    assert response.headers["access-control-allow-headers"] == "authorization,content-type"
    assert response.headers["access-control-max-age"] == "600"
    assert functions.calls == []


def test_a_cross_origin_response_carries_the_configured_headers_not_the_functions_own(
    serve, sandbox: SandboxHost
) -> None:
    url, functions = serve(TEMPLATE_CORS)
    functions.reply = {
        "statusCode": 200,
        "headers": {"access-control-allow-origin": "https://evil.example.com"},
        "body": "{}",
    }
    token = requests.get(f"{sandbox.url}/_token", params={"sub": "u1"}, timeout=5).json()["token"]

    answered = requests.get(
        f"{url}/v1/me/notifications/n1",
        headers={"Origin": APP, "Authorization": f"Bearer {token}"},
        timeout=5,
    )
    refused = requests.get(f"{url}/v1/me/notifications/n1", headers={"Origin": APP}, timeout=5)
    same_origin = requests.get(
        f"{url}/v1/me/notifications/n1", headers={"Authorization": f"Bearer {token}"}, timeout=5
    )

    assert answered.status_code == 200
    assert answered.headers["access-control-allow-origin"] == "*"
    assert refused.status_code == 401  # the authorizer's answer is readable by the page too
    assert refused.headers["access-control-allow-origin"] == "*"
    assert same_origin.status_code == 200
    assert "access-control-allow-origin" not in same_origin.headers


def test_only_the_listed_origins_are_allowed(serve) -> None:
    url, _ = serve({**TEMPLATE_CORS, "allowOrigins": [APP]})

    allowed = requests.options(f"{url}/v1/me/x", headers=PREFLIGHT, timeout=5)
    other = requests.options(
        f"{url}/v1/me/x", headers={**PREFLIGHT, "Origin": "http://127.0.0.1:9"}, timeout=5
    )

    assert allowed.headers["access-control-allow-origin"] == APP
    assert other.status_code == 204
    assert not any(name.lower().startswith("access-control-") for name in other.headers)


def test_without_a_cors_configuration_a_preflight_is_routed_like_any_request(serve) -> None:
    url, functions = serve(None)

    # `ANY /v1/me/{proxy+}` takes the OPTIONS request: its authorizer refuses it (no token)
    response = requests.options(f"{url}/v1/me/notifications/n1", headers=PREFLIGHT, timeout=5)

    assert response.status_code == 401
    assert not any(name.lower().startswith("access-control-") for name in response.headers)
    assert functions.calls == []
