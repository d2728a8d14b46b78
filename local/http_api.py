"""The template's HTTP API on loopback, as API Gateway HTTP APIs serve it (payload format 2.0).

    api = LocalHttpApi(description, invoke=runner.invoke).start()   # port: $HERALD_API_PORT or 3000
    ...
    api.stop()

Each request is matched to a route of the `StackDescription` (`HttpRoute`s on the functions) the
way API Gateway does (exact before `{param}` before `{proxy+}`, a method before `ANY`, then
`$default`), checked by the route's JWT authorizer like API Gateway's (RS256 signature against the
issuer's JWKS, `iss`, `aud`/`client_id`, `exp`/`nbf`, the route's scopes), turned into an HTTP API
v2.0 event and handed to `invoke(function_logical_id, event)`. The result is translated back the
way API Gateway does: a dict with `statusCode` (headers, cookies, body, isBase64Encoded), anything
else becomes a 200 JSON response. CORS follows the API's CorsConfiguration as API Gateway applies
it: a preflight (`OPTIONS` with `Origin` and `Access-Control-Request-Method`) is answered by the API
itself, before any route or authorizer, and every response to a request with an allowed `Origin`
carries the configured `access-control-*` headers. Not emulated: throttling, access logs, stages
other than `$default`, mutual TLS, custom domains.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import secrets
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Self
from urllib.parse import urlsplit

import jwt
from jwt.algorithms import RSAAlgorithm
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response

from local.model import HttpRoute, JwtAuthorizer, StackDescription

logger = logging.getLogger("local.api")

DEFAULT_PORT = 3000
PORT_ENV = "HERALD_API_PORT"
JWT_ALGORITHMS = ("RS256", "RS384", "RS512")
DEFAULT_ACCOUNT_ID = "123456789012"

Invoke = Callable[[str, dict[str, Any]], Any]
FetchJson = Callable[[str], Any]

_TEXT_TYPES = (
    "text/",
    "application/json",
    "application/javascript",
    "application/xml",
    "application/xhtml+xml",
    "application/ld+json",
    "application/problem+json",
)


def port_from_env(default: int = DEFAULT_PORT) -> int:
    value = os.environ.get(PORT_ENV, "").strip()
    if not value:
        return default
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"{PORT_ENV} must be a port number, not {value!r}") from None


def is_loopback_url(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme in ("http", "https") and parts.hostname in ("127.0.0.1", "localhost", "::1")


def fetch_json(url: str, timeout: float = 5.0) -> Any:
    """GET a JSON document, from loopback only (the local stack never leaves the machine)."""
    if not is_loopback_url(url):
        raise PermissionError(f"refusing to fetch {url}: the local stack only talks to loopback")
    with urllib.request.urlopen(url, timeout=timeout) as response:  # loopback only (checked above)
        return json.loads(response.read())


# -- routes ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _CompiledRoute:
    route: HttpRoute
    function: str
    segments: tuple[str, ...]
    greedy: bool
    literals: int

    @property
    def route_key(self) -> str:
        return self.route.path if self.route.path == "$default" else f"{self.route.method} {self.route.path}"

    def match(self, method: str, path: str) -> dict[str, str] | None:
        if self.route.method not in ("ANY", method):
            return None
        if self.route.path == "$default":
            return {}
        parts = path.split("/")[1:]
        params: dict[str, str] = {}
        for index, segment in enumerate(self.segments):
            if segment.startswith("{") and segment.endswith("+}"):
                rest = parts[index:]
                if not rest or rest == [""]:
                    return None
                params[segment[1:-2]] = "/".join(rest)
                return params
            if index >= len(parts):
                return None
            if segment.startswith("{") and segment.endswith("}"):
                if parts[index] == "":
                    return None
                params[segment[1:-1]] = parts[index]
            elif segment != parts[index]:
                return None
        return params if len(parts) == len(self.segments) else None

    def priority(self) -> tuple[int, int, int, int]:
        """Lower sorts first: exact paths, then `{param}`s, then greedy; a method before ANY."""
        return (
            1 if self.route.path == "$default" else 0,
            1 if self.greedy else 0,
            -self.literals,
            1 if self.route.method == "ANY" else 0,
        )


def _compile(route: HttpRoute, function: str) -> _CompiledRoute:
    segments = tuple(route.path.split("/")[1:]) if route.path != "$default" else ()
    greedy = bool(segments) and segments[-1].endswith("+}")
    literals = sum(1 for s in segments if not s.startswith("{"))
    return _CompiledRoute(route, function, segments, greedy, literals)


# -- JWT ---------------------------------------------------------------------------------------


class Unauthorized(Exception):
    """The request fails the route's JWT authorizer (API Gateway answers 401)."""


class InsufficientScope(Exception):
    """A valid token without any of the route's authorization scopes (API Gateway answers 403)."""


class JwksCache:
    """Signing keys per issuer, discovered like API Gateway does (OpenID configuration's
    `jwks_uri`, else `{issuer}/.well-known/jwks.json`); refreshed for an unknown `kid`."""

    def __init__(self, fetch: FetchJson = fetch_json, refresh_interval: float = 5.0) -> None:
        self._fetch = fetch
        self._refresh_interval = refresh_interval
        self._keys: dict[str, dict[str, Any]] = {}
        self._fetched_at: dict[str, float] = {}
        self._lock = threading.Lock()

    def key(self, issuer: str, kid: str | None) -> Any:
        with self._lock:
            keys = self._keys.get(issuer)
            stale = time.monotonic() - self._fetched_at.get(issuer, -1e9) > self._refresh_interval
            if keys is None or (kid not in keys and stale):
                keys = self._load(issuer)
                self._keys[issuer] = keys
                self._fetched_at[issuer] = time.monotonic()
        if kid is None and len(keys) == 1:
            return next(iter(keys.values()))
        if kid not in keys:
            raise Unauthorized(f"no signing key {kid!r} in the issuer's JWKS")
        return keys[kid]

    def _load(self, issuer: str) -> dict[str, Any]:
        base = issuer.rstrip("/")
        try:
            discovery = self._fetch(f"{base}/.well-known/openid-configuration")
            jwks_uri = str(discovery["jwks_uri"])
        except Exception:
            jwks_uri = f"{base}/.well-known/jwks.json"
        try:
            document = self._fetch(jwks_uri)
        except Exception as error:
            logger.warning("cannot fetch the JWKS of %s (%s): %s", issuer, jwks_uri, error)
            raise Unauthorized(f"cannot fetch the issuer's JWKS: {error}") from None
        keys: dict[str, Any] = {}
        for entry in document.get("keys", []):
            if entry.get("kty") != "RSA" or entry.get("use", "sig") != "sig":
                continue
            keys[str(entry.get("kid"))] = RSAAlgorithm.from_jwk(json.dumps(entry))
        return keys


def bearer_token(value: str | None) -> str:
    if not value:
        raise Unauthorized("no token")
    value = value.strip()
    if value[:7].lower() == "bearer ":
        value = value[7:].strip()
    if not value:
        raise Unauthorized("no token")
    return value


def verify_jwt(token: str, authorizer: JwtAuthorizer, keys: JwksCache) -> dict[str, Any]:
    """The claims of a token API Gateway's JWT authorizer would accept, else `Unauthorized`."""
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError as error:
        raise Unauthorized(f"malformed token: {error}") from None
    if header.get("alg") not in JWT_ALGORITHMS:
        raise Unauthorized(f"unsupported algorithm {header.get('alg')!r}")
    key = keys.key(authorizer.issuer, header.get("kid"))
    try:
        claims = jwt.decode(
            token,
            key,
            algorithms=list(JWT_ALGORITHMS),
            issuer=authorizer.issuer,
            options={"verify_aud": False, "require": ["exp", "iss"]},
        )
    except jwt.PyJWTError as error:
        raise Unauthorized(str(error)) from None
    audiences = claims.get("aud", claims.get("client_id"))
    if isinstance(audiences, str):
        audiences = [audiences]
    if not audiences or not set(audiences) & set(authorizer.audience):
        raise Unauthorized("audience not accepted")
    return claims


def token_scopes(claims: dict[str, Any]) -> list[str]:
    scopes = claims.get("scope", claims.get("scp"))
    if isinstance(scopes, str):
        return scopes.split()
    if isinstance(scopes, list):
        return [str(s) for s in scopes]
    return []


def _claim_string(value: Any) -> str:
    """HTTP APIs hand claims to the function as strings (arrays as "[a b]")."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + " ".join(_claim_string(v) for v in value) + "]"
    if isinstance(value, dict):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


# -- the server --------------------------------------------------------------------------------


class _QuietHandler(WSGIRequestHandler):
    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass


def _json_response(
    payload: Any, status: int, request_id: str, headers: dict[str, str] | None = None
) -> Response:
    response = Response(json.dumps(payload), status=status, content_type="application/json")
    response.headers["apigw-requestid"] = request_id
    for key, value in (headers or {}).items():
        response.headers[key] = value
    return response


class LocalHttpApi:
    """A threaded loopback server for the description's HTTP routes (see module docstring).

    The socket is bound at construction (port 0 picks a free one); `start()` serves in a
    background thread; `stop()` ends it. `handle(request)` is the whole behaviour, without a socket.
    """

    def __init__(
        self,
        description: StackDescription,
        invoke: Invoke,
        *,
        host: str = "127.0.0.1",
        port: int | None = None,
        api_logical_id: str | None = None,
        jwks: JwksCache | None = None,
    ) -> None:
        if not is_loopback_url(f"http://{host}/"):
            raise ValueError(f"the local HTTP API listens on loopback only, not {host!r}")
        self.description = description
        self.invoke = invoke
        self.jwks = jwks or JwksCache()
        self.authorizers = dict(description.authorizers)
        routes = [
            _compile(route, function.logical_id)
            for function in description.functions.values()
            for route in function.http_routes
            if api_logical_id is None or route.api_logical_id == api_logical_id
        ]
        self.routes = sorted(routes, key=_CompiledRoute.priority)
        for compiled in self.routes:
            name = compiled.route.authorizer
            if name is not None and name not in self.authorizers:
                raise ValueError(f"route {compiled.route_key} uses unknown authorizer {name}")
        self.account_id = _account_id(description)
        self.api_id = _api_id(description, api_logical_id)
        configs = [c for api, c in description.cors.items() if api_logical_id in (None, api)]
        self.cors: dict[str, Any] | None = configs[0] if len(configs) == 1 else None
        self._server: BaseWSGIServer = make_server(
            host,
            port_from_env() if port is None else port,
            self._wsgi,
            threaded=True,
            request_handler=_QuietHandler,
        )
        self.host = host
        self.port: int = self._server.server_port
        self.url = f"http://{host}:{self.port}"
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> Self:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._server.serve_forever, name=f"http-api:{self.port}", daemon=True
                )
                self._thread.start()
                logger.info("HTTP API listening on %s (%d routes)", self.url, len(self.routes))
        return self

    def stop(self) -> None:
        with self._lock:
            thread, self._thread = self._thread, None
            if thread is not None:
                self._server.shutdown()
                thread.join(timeout=10)
            self._server.server_close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- requests ------------------------------------------------------------------------------

    def _wsgi(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        request = Request(environ)
        started = time.monotonic()
        response = self.handle(request)
        logger.info(
            "%s %s %s %.1fms",
            request.method,
            request.path,
            response.status_code,
            (time.monotonic() - started) * 1000,
        )
        return response(environ, start_response)

    def match(self, method: str, path: str) -> tuple[_CompiledRoute, dict[str, str]] | None:
        for compiled in self.routes:
            params = compiled.match(method, path)
            if params is not None:
                return compiled, params
        return None

    def handle(self, request: Request) -> Response:
        request_id = base64.b64encode(secrets.token_bytes(10)).decode()
        if self.cors is None:
            return self._handle(request, request_id)
        origin = request.headers.get("Origin")
        preflight = bool(origin) and request.method == "OPTIONS"
        preflight = preflight and "Access-Control-Request-Method" in request.headers
        response = Response(status=204) if preflight else self._handle(request, request_id)
        if preflight:
            response.headers["apigw-requestid"] = request_id
        for key in {k for k, _ in response.headers.items() if k.lower().startswith("access-control-")}:
            del response.headers[key]  # API Gateway ignores the integration's own CORS headers
        if origin:
            response.headers.extend(_cors_headers(self.cors, origin, request, preflight))
        return response

    def _handle(self, request: Request, request_id: str) -> Response:
        found = self.match(request.method, request.path)
        if found is None:
            return _json_response({"message": "Not Found"}, 404, request_id)
        compiled, params = found

        jwt_context: dict[str, Any] | None = None
        if compiled.route.authorizer is not None:
            authorizer = self.authorizers[compiled.route.authorizer]
            try:
                claims = self._authorize(request, authorizer, compiled.route)
            except InsufficientScope as error:
                logger.info("403 %s %s: %s", request.method, request.path, error)
                return _json_response({"message": "Forbidden"}, 403, request_id)
            except Unauthorized as error:
                logger.info("401 %s %s: %s", request.method, request.path, error)
                return _json_response(
                    {"message": "Unauthorized"},
                    401,
                    request_id,
                    {"www-authenticate": f'Bearer error="invalid_token" error_description="{error}"'},
                )
            scopes = token_scopes(claims)
            jwt_context = {
                "claims": {key: _claim_string(value) for key, value in claims.items()},
                "scopes": scopes or None,
            }

        event = self.event(request, compiled, params, request_id, jwt_context)
        try:
            result = self.invoke(compiled.function, event)
        except Exception:
            logger.exception("function %s failed for %s", compiled.function, compiled.route_key)
            return _json_response({"message": "Internal Server Error"}, 500, request_id)
        try:
            return self._response(result, request_id)
        except (TypeError, ValueError) as error:
            logger.error("function %s returned an invalid response: %s", compiled.function, error)
            return _json_response({"message": "Internal Server Error"}, 500, request_id)

    def _authorize(self, request: Request, authorizer: JwtAuthorizer, route: HttpRoute) -> dict[str, Any]:
        source = authorizer.identity_source.split(",")[0].strip()
        prefix = "$request.header."
        header = source[len(prefix) :] if source.startswith(prefix) else "Authorization"
        claims = verify_jwt(bearer_token(request.headers.get(header)), authorizer, self.jwks)
        required = route.authorization_scopes
        if required and not set(required) & set(token_scopes(claims)):
            raise InsufficientScope(f"none of the scopes {sorted(required)}")
        return claims

    def event(
        self,
        request: Request,
        compiled: _CompiledRoute,
        params: dict[str, str],
        request_id: str,
        jwt_context: dict[str, Any] | None,
    ) -> dict[str, Any]:
        """The payload format 2.0 event API Gateway would send for this request."""
        headers: dict[str, str] = {}
        for key, value in request.headers.items():
            name = key.lower()
            if name == "cookie":
                continue
            headers[name] = f"{headers[name]},{value}" if name in headers else value
        cookie_header = request.headers.get("Cookie")
        cookies = [c.strip() for c in cookie_header.split(";") if c.strip()] if cookie_header else []
        query: dict[str, str] = {}
        for key, values in request.args.lists():
            query[key] = ",".join(values)
        now = datetime.now(UTC)
        host = request.host or f"{self.host}:{self.port}"
        context: dict[str, Any] = {
            "accountId": self.account_id,
            "apiId": self.api_id,
            "domainName": host,
            "domainPrefix": host.split(".")[0].split(":")[0],
            "http": {
                "method": request.method,
                "path": request.path,
                "protocol": request.environ.get("SERVER_PROTOCOL", "HTTP/1.1"),
                "sourceIp": request.remote_addr or "127.0.0.1",
                "userAgent": request.headers.get("User-Agent", ""),
            },
            "requestId": request_id,
            "routeKey": compiled.route_key,
            "stage": "$default",
            "time": now.strftime("%d/%b/%Y:%H:%M:%S +0000"),
            "timeEpoch": int(now.timestamp() * 1000),
        }
        if jwt_context is not None:
            context["authorizer"] = {"jwt": jwt_context}
        event: dict[str, Any] = {
            "version": "2.0",
            "routeKey": compiled.route_key,
            "rawPath": request.path,
            "rawQueryString": request.query_string.decode("latin-1"),
            "headers": headers,
            "requestContext": context,
            "isBase64Encoded": False,
        }
        if cookies:
            event["cookies"] = cookies
        if query:
            event["queryStringParameters"] = query
        if params:
            event["pathParameters"] = params
        body = request.get_data(cache=False)
        if body:
            content_type = (request.mimetype or "").lower()
            if content_type.startswith(_TEXT_TYPES) or content_type.endswith("+json"):
                try:
                    event["body"] = body.decode("utf-8")
                except UnicodeDecodeError:
                    event["body"] = base64.b64encode(body).decode()
                    event["isBase64Encoded"] = True
            else:
                event["body"] = base64.b64encode(body).decode()
                event["isBase64Encoded"] = True
        return event

    def _response(self, result: Any, request_id: str) -> Response:
        if not (isinstance(result, dict) and "statusCode" in result):
            # API Gateway: valid JSON without statusCode -> 200, application/json, the JSON as body.
            return _json_response(result, 200, request_id)
        status = int(result["statusCode"])
        body = result.get("body")
        if body is None:
            data = b""
        elif result.get("isBase64Encoded"):
            data = base64.b64decode(str(body))
        else:
            data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
        response = Response(data, status=status)
        response.headers.remove("Content-Type")
        headers = {str(k).lower(): str(v) for k, v in (result.get("headers") or {}).items()}
        headers.setdefault("content-type", "application/json")
        for key, value in headers.items():
            response.headers[key] = value
        for cookie in result.get("cookies") or []:
            response.headers.add("Set-Cookie", str(cookie))
        response.headers["apigw-requestid"] = request_id
        return response


def _cors_headers(cors: dict[str, Any], origin: str, request: Request, preflight: bool) -> dict[str, str]:
    """The `access-control-*` headers API Gateway adds for `cors` (the translated CorsConfiguration):
    none for an origin it does not allow."""
    allowed = [str(o) for o in cors.get("allowOrigins") or []]
    if "*" not in allowed and origin not in allowed:
        return {}
    headers = {"access-control-allow-origin": "*" if "*" in allowed else origin}
    if cors.get("allowCredentials"):
        headers["access-control-allow-credentials"] = "true"
    if preflight:
        methods = [str(m) for m in cors.get("allowMethods") or []]
        requested = request.headers.get("Access-Control-Request-Method", "")
        headers["access-control-allow-methods"] = requested if "*" in methods else ",".join(methods)
        allow_headers = [str(h) for h in cors.get("allowHeaders") or []]
        if "*" in allow_headers:
            allow_headers = [request.headers.get("Access-Control-Request-Headers", "")]
        if any(allow_headers):
            headers["access-control-allow-headers"] = ",".join(allow_headers)
        if cors.get("maxAge") is not None:
            headers["access-control-max-age"] = str(cors["maxAge"])
    elif cors.get("exposeHeaders"):
        headers["access-control-expose-headers"] = ",".join(str(h) for h in cors["exposeHeaders"])
    return headers


def _account_id(description: StackDescription) -> str:
    for resource in description.resources.values():
        arn = resource.attributes.get("Arn", "")
        parts = arn.split(":")
        if len(parts) > 4 and parts[4].isdigit():
            return parts[4]
    return DEFAULT_ACCOUNT_ID


def _api_id(description: StackDescription, api_logical_id: str | None) -> str:
    for logical_id, resource in description.resources.items():
        if resource.type == "AWS::ApiGatewayV2::Api" and api_logical_id in (None, logical_id):
            return resource.physical_id
    return uuid.uuid4().hex[:10]
