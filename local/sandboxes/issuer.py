"""A local OpenID-style issuer: RS256 user tokens and the JWKS an HTTP API checks them with."""

from __future__ import annotations

import time
from typing import Any

import jwt
from jwt.algorithms import RSAAlgorithm
from werkzeug.wrappers import Request, Response

from local.sandboxes.credentials import JwtIssuerCredentials
from local.sandboxes.web import ControlError, Route, json_response


class JwtIssuer:
    """Mints tokens (`GET /_token?sub=`) and serves `/.well-known/jwks.json` + discovery."""

    def __init__(self, credentials: JwtIssuerCredentials) -> None:
        self.credentials = credentials

    @property
    def issuer(self) -> str:
        return self.credentials.issuer

    @property
    def audience(self) -> str:
        return self.credentials.audience

    def token(
        self,
        sub: str,
        *,
        ttl: int = 3600,
        audience: str | None = None,
        scope: str | None = None,
        **claims: Any,
    ) -> str:
        """An RS256 JWT for user `sub` (a negative `ttl` makes an already expired one)."""
        now = int(time.time())
        payload: dict[str, Any] = {
            "iss": self.issuer,
            "aud": audience or self.audience,
            "sub": sub,
            "iat": now,
            "exp": now + ttl,
            **claims,
        }
        if scope:
            payload["scope"] = scope
        return jwt.encode(
            payload, self.credentials.private_key, algorithm="RS256", headers={"kid": self.credentials.kid}
        )

    def jwks(self) -> dict[str, Any]:
        key = RSAAlgorithm.to_jwk(self.credentials.private_key.public_key(), as_dict=True)
        key.update({"kid": self.credentials.kid, "use": "sig", "alg": "RS256"})
        return {"keys": [key]}

    def openid_configuration(self, base_url: str) -> dict[str, Any]:
        return {
            "issuer": self.issuer,
            "jwks_uri": f"{base_url}/.well-known/jwks.json",
            "token_endpoint": f"{base_url}/_token",
            "response_types_supported": ["token"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
        }

    def routes(self) -> list[Route]:
        return [
            Route("/_token", ("GET",), self._token),
            Route("/.well-known/jwks.json", ("GET",), lambda request, args: json_response(self.jwks())),
            Route(
                "/.well-known/openid-configuration",
                ("GET",),
                lambda request, args: json_response(self.openid_configuration(request.host_url.rstrip("/"))),
            ),
        ]

    def _token(self, request: Request, args: dict[str, str]) -> Response:
        sub = request.args.get("sub", "")
        if not sub:
            raise ControlError("sub is required")
        try:
            ttl = int(request.args.get("ttl", "3600"))
        except ValueError:
            raise ControlError("ttl must be an integer") from None
        token = self.token(
            sub, ttl=ttl, audience=request.args.get("aud") or None, scope=request.args.get("scope") or None
        )
        return json_response({"token": token, "token_type": "Bearer", "expires_in": ttl})
