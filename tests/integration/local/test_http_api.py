"""The local HTTP API: routes served as API Gateway HTTP API payload 2.0 events, the JWT authorizer
enforced against the sandbox issuer's JWKS, responses translated like API Gateway."""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from typing import Any

import jwt
import pytest
import requests
from cryptography.hazmat.primitives.asymmetric import rsa

from local.http_api import LocalHttpApi
from local.model import FunctionSpec, HttpRoute, JwtAuthorizer, PhysicalResource, StackDescription
from local.sandboxes import SandboxHost

pytestmark = pytest.mark.integration


class FakeFunctions:
    """Stands in for the runner: records every invocation and answers with `reply`."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.reply: Any = {"statusCode": 200, "body": '{"ok": true}'}

    def __call__(self, function: str, event: dict[str, Any]) -> Any:
        self.calls.append((function, event))
        if isinstance(self.reply, Exception):
            raise self.reply
        return self.reply

    @property
    def last(self) -> dict[str, Any]:
        return self.calls[-1][1]


def _function(logical_id: str, routes: list[HttpRoute]) -> FunctionSpec:
    return FunctionSpec(
        logical_id=logical_id,
        code_uri="functions/x/",
        module="functions.x.app",
        handler="lambda_handler",
        timeout_seconds=30,
        memory_mb=512,
        environment={},
        http_routes=routes,
    )


def route(
    method: str, path: str, auth: str | None = "HeraldJwt", scopes: list[str] | None = None
) -> HttpRoute:
    return HttpRoute(method, path, auth, "HttpApi", authorization_scopes=scopes or [])


def _description(sandbox: SandboxHost) -> StackDescription:
    return StackDescription(
        region="us-east-1",
        aws_endpoint="http://127.0.0.1:1",
        api_endpoint="http://127.0.0.1:0",
        sandbox_endpoint=sandbox.url,
        parameters={},
        resources={
            "HttpApi": PhysicalResource("HttpApi", "AWS::ApiGatewayV2::Api", "abc123", {"ApiId": "abc123"}),
            "ApiFunction": PhysicalResource(
                "ApiFunction",
                "AWS::Lambda::Function",
                "herald-local-ApiFunction",
                {"Arn": "arn:aws:lambda:us-east-1:123456789012:function:herald-local-ApiFunction"},
            ),
        },
        functions={
            "ApiFunction": _function(
                "ApiFunction",
                [
                    route("ANY", "/v1/me/{proxy+}"),
                    route("GET", "/v1/me/notifications/{id}"),
                    route("POST", "/v1/me/notifications/{id}/ack", scopes=["herald/ack"]),
                ],
            ),
            "WebhookFunction": _function("WebhookFunction", [route("POST", "/v1/webhooks/{provider}", None)]),
            "ExactFunction": _function("ExactFunction", [route("GET", "/v1/me/notifications/latest")]),
        },
        authorizers={
            "HeraldJwt": JwtAuthorizer(
                name="HeraldJwt",
                issuer=sandbox.credentials.jwt.issuer,
                audience=[sandbox.credentials.jwt.audience],
            )
        },
    )


@pytest.fixture
def functions() -> FakeFunctions:
    return FakeFunctions()


@pytest.fixture
def api(sandbox: SandboxHost, functions: FakeFunctions) -> Iterator[LocalHttpApi]:
    server = LocalHttpApi(_description(sandbox), functions, port=0).start()
    try:
        yield server
    finally:
        server.stop()


def _token(sandbox: SandboxHost, **params: Any) -> str:
    response = requests.get(f"{sandbox.url}/_token", params=params, timeout=5)
    assert response.status_code == 200
    return str(response.json()["token"])


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _unauthorized(response: requests.Response) -> bool:
    return response.status_code == 401 and response.json() == {"message": "Unauthorized"}


def test_no_token_is_401_and_the_function_is_not_invoked(api: LocalHttpApi, functions: FakeFunctions) -> None:
    response = requests.get(f"{api.url}/v1/me/notifications/n1", timeout=5)
    assert _unauthorized(response)
    assert functions.calls == []


def test_a_sandbox_token_is_accepted_and_the_event_is_payload_2_0(
    api: LocalHttpApi, functions: FakeFunctions, sandbox: SandboxHost
) -> None:
    token = _token(sandbox, sub="u1")
    response = requests.get(
        f"{api.url}/v1/me/notifications/n1?a=1&a=2&b=x",
        headers={**_auth(token), "X-Custom": "v", "Cookie": "c1=1; c2=2"},
        timeout=5,
    )
    assert response.status_code == 200
    assert response.json() == {"ok": True}
    assert response.headers["apigw-requestid"]

    ((function, event),) = functions.calls
    assert function == "ApiFunction"
    assert event["version"] == "2.0"
    assert event["routeKey"] == "GET /v1/me/notifications/{id}"
    assert event["rawPath"] == "/v1/me/notifications/n1"
    assert event["rawQueryString"] == "a=1&a=2&b=x"
    assert event["queryStringParameters"] == {"a": "1,2", "b": "x"}
    assert event["pathParameters"] == {"id": "n1"}
    assert event["headers"]["x-custom"] == "v"
    assert event["headers"]["authorization"] == f"Bearer {token}"
    assert "cookie" not in event["headers"]
    assert event["cookies"] == ["c1=1", "c2=2"]
    assert event["isBase64Encoded"] is False
    assert "body" not in event
    context = event["requestContext"]
    assert context["http"]["method"] == "GET"
    assert context["http"]["path"] == "/v1/me/notifications/n1"
    assert context["http"]["sourceIp"] == "127.0.0.1"
    assert context["routeKey"] == event["routeKey"]
    assert context["stage"] == "$default"
    assert context["apiId"] == "abc123"
    assert context["accountId"] == "123456789012"
    assert context["requestId"] == response.headers["apigw-requestid"]
    assert abs(context["timeEpoch"] / 1000 - time.time()) < 30
    assert context["time"].endswith("+0000")
    claims = context["authorizer"]["jwt"]["claims"]
    assert claims["sub"] == "u1"
    assert claims["iss"] == sandbox.credentials.jwt.issuer
    assert claims["aud"] == sandbox.credentials.jwt.audience
    assert isinstance(claims["exp"], str) and claims["exp"].isdigit()


def test_a_token_signed_with_another_key_is_401(
    api: LocalHttpApi, functions: FakeFunctions, sandbox: SandboxHost
) -> None:
    forger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    now = int(time.time())
    claims = {
        "iss": sandbox.credentials.jwt.issuer,
        "aud": sandbox.credentials.jwt.audience,
        "sub": "u1",
        "iat": now,
        "exp": now + 600,
    }
    for kid in (sandbox.credentials.jwt.kid, "other-kid"):
        forged = jwt.encode(claims, forger, algorithm="RS256", headers={"kid": kid})
        assert _unauthorized(
            requests.get(f"{api.url}/v1/me/notifications/n1", headers=_auth(forged), timeout=5)
        )
    assert functions.calls == []


def test_wrong_audience_wrong_issuer_and_expired_tokens_are_401(
    api: LocalHttpApi, functions: FakeFunctions, sandbox: SandboxHost
) -> None:
    url = f"{api.url}/v1/me/notifications/n1"
    wrong_audience = _token(sandbox, sub="u1", aud="someone-else")
    expired = _token(sandbox, sub="u1", ttl=-60)
    now = int(time.time())
    wrong_issuer = jwt.encode(
        {"iss": "http://127.0.0.1:1", "aud": sandbox.credentials.jwt.audience, "sub": "u1", "exp": now + 60},
        sandbox.credentials.jwt.private_key,
        algorithm="RS256",
        headers={"kid": sandbox.credentials.jwt.kid},
    )
    for token in (wrong_audience, expired, wrong_issuer, "not-a-jwt"):
        assert _unauthorized(requests.get(url, headers=_auth(token), timeout=5)), token
    assert functions.calls == []
    # The same request with a good token goes through (the checks above are what failed).
    assert requests.get(url, headers=_auth(_token(sandbox, sub="u1")), timeout=5).status_code == 200


def test_route_scopes_are_enforced(api: LocalHttpApi, functions: FakeFunctions, sandbox: SandboxHost) -> None:
    url = f"{api.url}/v1/me/notifications/n1/ack"
    # a valid token without the route's scope: API Gateway's 403 Forbidden (not 401)
    refused = requests.post(url, headers=_auth(_token(sandbox, sub="u1")), timeout=5)
    assert (refused.status_code, refused.json()) == (403, {"message": "Forbidden"})
    assert functions.calls == []
    token = _token(sandbox, sub="u1", scope="openid herald/ack")
    assert requests.post(url, headers=_auth(token), timeout=5).status_code == 200
    assert functions.last["requestContext"]["authorizer"]["jwt"]["scopes"] == ["openid", "herald/ack"]


def test_an_unauthenticated_route_works_without_a_token(api: LocalHttpApi, functions: FakeFunctions) -> None:
    response = requests.post(
        f"{api.url}/v1/webhooks/twilio",
        data={"MessageSid": "SM1", "MessageStatus": "delivered"},
        timeout=5,
    )
    assert response.status_code == 200
    ((function, event),) = functions.calls
    assert function == "WebhookFunction"
    assert event["pathParameters"] == {"provider": "twilio"}
    assert "authorizer" not in event["requestContext"]
    # API Gateway base64-encodes non-text bodies, form posts included.
    assert event["isBase64Encoded"] is True
    assert base64.b64decode(event["body"]) == b"MessageSid=SM1&MessageStatus=delivered"

    requests.post(f"{api.url}/v1/webhooks/sendgrid", json=[{"event": "delivered"}], timeout=5)
    assert functions.last["isBase64Encoded"] is False
    assert functions.last["body"] == '[{"event": "delivered"}]'


def test_unknown_routes_and_methods_are_404(api: LocalHttpApi, functions: FakeFunctions) -> None:
    for method, path in (("GET", "/nope"), ("GET", "/v1/webhooks/twilio"), ("GET", "/v1/me")):
        response = requests.request(method, f"{api.url}{path}", timeout=5)
        assert response.status_code == 404, path
        assert response.json() == {"message": "Not Found"}
    assert functions.calls == []


def test_the_most_specific_route_wins(
    api: LocalHttpApi, functions: FakeFunctions, sandbox: SandboxHost
) -> None:
    headers = _auth(_token(sandbox, sub="u1"))
    requests.get(f"{api.url}/v1/me/notifications/latest", headers=headers, timeout=5)
    assert functions.calls[-1][0] == "ExactFunction"
    requests.get(f"{api.url}/v1/me/notifications/n2", headers=headers, timeout=5)
    assert functions.last["routeKey"] == "GET /v1/me/notifications/{id}"
    requests.delete(f"{api.url}/v1/me/devices/d1", headers=headers, timeout=5)
    assert functions.last["routeKey"] == "ANY /v1/me/{proxy+}"
    assert functions.last["pathParameters"] == {"proxy": "devices/d1"}


def test_responses_are_translated_like_api_gateway(
    api: LocalHttpApi, functions: FakeFunctions, sandbox: SandboxHost
) -> None:
    url = f"{api.url}/v1/webhooks/x"
    functions.reply = {
        "statusCode": 201,
        "headers": {"Content-Type": "text/plain", "X-Thing": 1},
        "cookies": ["a=1; Path=/", "b=2"],
        "body": "created",
    }
    response = requests.post(url, timeout=5)
    assert (response.status_code, response.text) == (201, "created")
    assert response.headers["content-type"] == "text/plain"
    assert response.headers["x-thing"] == "1"
    assert response.raw.headers.getlist("Set-Cookie") == ["a=1; Path=/", "b=2"]

    functions.reply = {
        "statusCode": 200,
        "body": base64.b64encode(b"\x00\x01").decode(),
        "isBase64Encoded": True,
    }
    assert requests.post(url, timeout=5).content == b"\x00\x01"

    functions.reply = {"hello": "world"}
    response = requests.post(url, timeout=5)
    assert (response.status_code, response.json()) == (200, {"hello": "world"})
    assert response.headers["content-type"] == "application/json"

    functions.reply = "plain"
    assert requests.post(url, timeout=5).json() == "plain"

    functions.reply = RuntimeError("boom")
    response = requests.post(url, timeout=5)
    assert (response.status_code, response.json()) == (500, {"message": "Internal Server Error"})
