"""The API function behind the local HTTP API, in-process: requests are matched to the template's
routes, checked by its JWT authorizer (real RS256 tokens from the local issuer, its JWKS handed
over without a socket), turned into payload 2.0 events and handled by `functions/api/app.py`.

    with provisioned_environment(monkeypatch, sandbox=api_credentials()) as stack:
        api = ApiClient(stack)
        answer = api.get("/v1/me/notifications", user="u1")    # answer.status, answer.json
        api.request("GET", "/v1/me/export", token=None)        # no token -> 401

Tests of a route's authorization use `user=None` (no token) or `token="..."` (a bad one).
"""

from __future__ import annotations

import json as jsonlib
from dataclasses import dataclass
from functools import cache
from typing import Any

from werkzeug.test import EnvironBuilder
from werkzeug.wrappers import Request

from local.http_api import JwksCache, LocalHttpApi
from local.sandboxes.credentials import SandboxCredentials
from local.sandboxes.issuer import JwtIssuer
from tests.support.stack import MotoStack, fresh_function_module

__all__ = ["Answer", "ApiClient", "api_credentials"]

API_FUNCTION = "ApiFunction"
OTHER_FUNCTIONS = {
    "TwilioWebhookFunction": "functions.twilio_webhook.app",
    "OperatorFunction": "functions.operator.app",
}


@cache
def api_credentials() -> SandboxCredentials:
    """Sandbox credentials (the JWT issuer's RSA key above all), generated once per process. Never
    served: the issuer's JWKS is handed to the API directly."""
    return SandboxCredentials.generate("http://127.0.0.1:9")


class LambdaContext:
    function_name = "herald-api"
    memory_limit_in_mb = 512
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:herald-api"
    aws_request_id = "req-api"

    @staticmethod
    def get_remaining_time_in_millis() -> int:
        return 10_000


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return jsonlib.loads(self.body)


class ApiClient:
    """Requests through the template's routes and authorizer to a freshly imported API module."""

    def __init__(self, stack: MotoStack, credentials: SandboxCredentials | None = None) -> None:
        self.module = fresh_function_module("functions.api.app")
        self._modules: dict[str, Any] = {API_FUNCTION: self.module}
        self.issuer = JwtIssuer((credentials or api_credentials()).jwt)
        self.events: list[dict[str, Any]] = []
        jwks = JwksCache(fetch=self._fetch)
        self.api = LocalHttpApi(stack.description, self._invoke, port=0, jwks=jwks)

    def _fetch(self, url: str) -> Any:
        if url.endswith("/.well-known/jwks.json"):
            return self.issuer.jwks()
        raise LookupError(url)  # no discovery document: the JWKS at its conventional path

    def _invoke(self, function: str, event: dict[str, Any]) -> Any:
        """The route's own function: the API's, or another the template routes there (the Twilio
        webhook's, decision 035; the operators', decision 038), each imported fresh on its first
        request."""
        if function not in self._modules:
            assert function in OTHER_FUNCTIONS, f"route served by {function}, not an HTTP API function"
            self._modules[function] = fresh_function_module(OTHER_FUNCTIONS[function])
        self.events.append(event)
        return self._modules[function].lambda_handler(event, LambdaContext())

    def close(self) -> None:
        self.api.stop()

    def token(self, user: str, **claims: Any) -> str:
        return self.issuer.token(user, **claims)

    def request(
        self,
        method: str,
        path: str,
        *,
        user: str | None = "u1",
        token: str | None = None,
        json: Any = None,
        query: dict[str, Any] | None = None,
        form: dict[str, str] | None = None,
        data: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> Answer:
        """`data`: an exact raw body (send its Content-Type in `headers`)."""
        sent = dict(headers or {})
        if token is None and user is not None:
            token = self.token(user)
        if token is not None:
            sent["Authorization"] = f"Bearer {token}"
        builder = EnvironBuilder(
            method=method,
            path=path,
            query_string=query,
            headers=sent,
            json=json,
            data=form if form is not None else data,
        )
        response = self.api.handle(Request(builder.get_environ()))
        return Answer(response.status_code, dict(response.headers), response.get_data())

    def get(self, path: str, **kwargs: Any) -> Answer:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> Answer:
        return self.request("POST", path, **kwargs)

    def put(self, path: str, **kwargs: Any) -> Answer:
        return self.request("PUT", path, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> Answer:
        return self.request("DELETE", path, **kwargs)
