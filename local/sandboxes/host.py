"""`SandboxHost`: one threaded loopback HTTP server for every provider sandbox."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any, Self

from werkzeug.exceptions import MethodNotAllowed, NotFound
from werkzeug.routing import Map, Rule
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response

from local.sandboxes.credentials import SandboxCredentials
from local.sandboxes.demo_page import DemoPage
from local.sandboxes.faults import Faults
from local.sandboxes.fcm import FcmSandbox, OAuthSandbox
from local.sandboxes.issuer import JwtIssuer
from local.sandboxes.outbox import Outbox
from local.sandboxes.pusher_channels import PusherSandbox
from local.sandboxes.pusher_ws import PusherSocketServer
from local.sandboxes.receivers import WebhookReceivers
from local.sandboxes.sendgrid_mail import SendGridSandbox
from local.sandboxes.twilio_messaging import TwilioSandbox
from local.sandboxes.web import (
    ControlError,
    Provider,
    Route,
    control_json,
    is_loopback_url,
    json_response,
    logger,
)

DEFAULT_PORT = 4010


class _QuietHandler(WSGIRequestHandler):
    """The host logs one line per request itself; silence werkzeug's access log."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass


class SandboxHost:
    """Serves the Pusher, FCM (+ Google OAuth), Twilio and SendGrid sandboxes, the webhook
    receivers, the local JWT issuer, the demo app page (`/demo/`) and the control endpoints on one
    loopback port; the Pusher sandbox's WebSocket side (pusher-js connects there) on `ws_port`
    (default: the next port, or a free one when `port` is 0).

    The socket is bound at construction, so `url`/`port` are known at once (port 0 picks a free
    one); `start()` begins serving in a background thread, `stop()` ends it. Without
    `credentials`, fresh ones are generated for this host's URL.
    """

    def __init__(
        self,
        credentials: SandboxCredentials | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = DEFAULT_PORT,
        pusher_webhook_url: str | None = None,
        receivers: Iterable[str] = ("default",),
        ws_port: int | None = None,
    ) -> None:
        if not is_loopback_url(f"http://{host}/"):
            raise ValueError(f"the sandboxes only listen on loopback, not {host!r}")
        self._server: BaseWSGIServer = make_server(
            host, port, self._wsgi, threaded=True, request_handler=_QuietHandler
        )
        self.host = host
        self.port: int = self._server.server_port
        self.url = f"http://{host}:{self.port}"
        self.credentials = credentials or SandboxCredentials.generate(self.url, receivers=receivers)
        if self.credentials.base_url != self.url:
            logger.warning(
                "credentials were made for %s but the host serves %s: token_uri and the exported "
                "secrets point at the former",
                self.credentials.base_url,
                self.url,
            )
        self.outbox = Outbox()
        self.faults = Faults()
        self.oauth = OAuthSandbox(self.credentials.fcm)
        self.pusher = PusherSandbox(self.credentials.pusher, self.outbox, pusher_webhook_url)
        self.fcm = FcmSandbox(self.credentials.fcm, self.oauth, self.outbox)
        self.twilio = TwilioSandbox(self.credentials.twilio, self.outbox)
        self.sendgrid = SendGridSandbox(self.credentials.sendgrid, self.outbox)
        self.receivers = WebhookReceivers(self.credentials.receivers, self.outbox)
        self.issuer = JwtIssuer(self.credentials.jwt)
        try:
            self.pusher_ws = PusherSocketServer(
                self.pusher, host=host, port=(self.port + 1 if port else 0) if ws_port is None else ws_port
            )
        except BaseException:
            self._server.server_close()
            raise
        self.demo = DemoPage(
            pusher_key=self.credentials.pusher.key, ws_host=host, ws_port=self.pusher_ws.port
        )
        self._providers: dict[str, Provider] = {
            provider.name: provider
            for provider in (self.pusher, self.fcm, self.oauth, self.twilio, self.sendgrid, self.receivers)
        }
        routes = [route for provider in self._providers.values() for route in provider.routes()]
        routes += self.issuer.routes() + self.demo.routes() + self._control_routes()
        self._map = Map(
            [Rule(route.path, methods=list(route.methods), endpoint=route) for route in routes],
            strict_slashes=False,
        )
        self._thread: threading.Thread | None = None
        self._closed = False
        self._lock = threading.Lock()

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> Self:
        """Serve in a daemon thread (idempotent). A stopped host cannot be started again."""
        with self._lock:
            if self._closed:
                raise RuntimeError("this SandboxHost was stopped; make a new one")
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._server.serve_forever, name=f"sandboxes:{self.port}", daemon=True
                )
                self._thread.start()
                self.pusher_ws.start()
                logger.info("sandboxes listening on %s", self.url)
        return self

    def stop(self) -> None:
        with self._lock:
            thread, self._thread = self._thread, None
            if thread is not None:
                self._server.shutdown()
                thread.join(timeout=10)
            if not self._closed:
                self._closed = True
                self.pusher_ws.stop()
                self._server.server_close()

    @property
    def running(self) -> bool:
        return self._thread is not None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def reset(self) -> None:
        """Clear the outbox, faults and every sandbox's state (credentials and URLs stay)."""
        self.outbox.clear()
        self.faults.clear()
        self.pusher.reset()
        self.fcm.reset()
        self.twilio.reset()
        self.sendgrid.reset()
        self.receivers.reset()

    @contextmanager
    def fault(self, provider: str, **spec: Any) -> Iterator[None]:
        """`with host.fault("twilio", status=503):` — a fault rule for the block only."""
        rule = self.faults.add(provider, **spec)
        try:
            yield
        finally:
            self.faults.remove(rule.id)

    # -- description -------------------------------------------------------------------------

    def endpoints(self) -> dict[str, Any]:
        creds = self.credentials
        return {
            "url": self.url,
            "pusher": {
                "host": self.host,
                "port": self.port,
                "ssl": False,
                "api": f"{self.url}/apps/{creds.pusher.app_id}",
                "ws": f"{self.pusher_ws.url}/app/{creds.pusher.key}",
                "webhook_url": self.pusher.webhook_url,
            },
            "demo": f"{self.url}/demo/",
            "fcm": {"send": creds.fcm_url, "oauth_token": creds.fcm.token_uri},
            "twilio": {
                "api_base": self.url,
                "messages": f"{self.url}/2010-04-01/Accounts/{creds.twilio.account_sid}/Messages.json",
            },
            "sendgrid": {"host": self.url, "mail_send": f"{self.url}/v3/mail/send"},
            "receivers": {name: f"{self.url}/receivers/{name}" for name in self.receivers.names()},
            "jwt": {
                "token": f"{self.url}/_token?sub=<user>",
                "jwks": f"{self.url}/.well-known/jwks.json",
                "openid_configuration": f"{self.url}/.well-known/openid-configuration",
                "issuer": creds.jwt.issuer,
                "audience": creds.jwt.audience,
            },
            "control": {
                "outbox": f"{self.url}/_outbox",
                "faults": f"{self.url}/_faults",
                "config": f"{self.url}/_config",
                "reset": f"{self.url}/_reset",
            },
        }

    def describe(self) -> dict[str, Any]:
        """Endpoints, credentials and Herald's secret values as one JSON-able document."""
        return {
            "endpoints": self.endpoints(),
            "secrets": self.credentials.secrets(),
            "sendgrid_event_webhook_public_key": self.sendgrid.event_webhook_public_key,
            "receivers": {
                name: {"url": f"{self.url}/receivers/{name}", "secret": self.receivers.secret(name)}
                for name in self.receivers.names()
            },
            "credentials": self.credentials.to_dict(),
        }

    # -- HTTP --------------------------------------------------------------------------------

    def _wsgi(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        request = Request(environ)
        started = time.monotonic()
        response = self._dispatch(request)
        logger.info(
            "%s %s %s %.1fms",
            request.method,
            request.path,
            response.status_code,
            (time.monotonic() - started) * 1000,
        )
        return response(environ, start_response)

    def _dispatch(self, request: Request) -> Response:
        adapter = self._map.bind_to_environ(request.environ)
        try:
            route, args = adapter.match()
        except NotFound:
            return json_response({"error": f"no sandbox route {request.method} {request.path}"}, 404)
        except MethodNotAllowed as error:
            allowed = ", ".join(error.valid_methods or [])
            return json_response({"error": f"method {request.method} not allowed"}, 405, {"Allow": allowed})
        assert isinstance(route, Route)
        try:
            if route.provider is not None:
                recipients = route.recipients(request, args) if route.recipients else []
                decision = self.faults.check(route.provider, request.path, recipients)
                if decision.latency_ms:
                    time.sleep(decision.latency_ms / 1000)
                if decision.status is not None:
                    logger.info("fault %s on %s %s", decision.status, route.provider, request.path)
                    response = self._providers[route.provider].fault_response(decision.status)
                    if decision.retry_after is not None:
                        response.headers["Retry-After"] = str(decision.retry_after)
                    return response
            return route.handler(request, args)
        except ControlError as error:
            return json_response({"error": error.message}, error.status)
        except Exception:
            logger.exception("sandbox handler failed: %s %s", request.method, request.path)
            return json_response({"error": "internal sandbox error"}, 500)

    def _control_routes(self) -> list[Route]:
        return [
            Route("/_outbox", ("GET",), self._outbox_list),
            Route("/_outbox", ("DELETE",), self._outbox_clear),
            Route("/_faults", ("GET",), self._faults_list),
            Route("/_faults", ("POST",), self._faults_add),
            Route("/_faults", ("DELETE",), self._faults_clear),
            Route("/_config", ("GET",), lambda request, args: json_response(self.describe())),
            Route("/_health", ("GET",), lambda request, args: json_response({"ok": True})),
            Route("/_reset", ("POST",), self._reset),
        ]

    def _outbox_list(self, request: Request, args: dict[str, str]) -> Response:
        try:
            entries = self.outbox.entries(
                since=request.args.get("since") or None,
                provider=request.args.get("provider") or None,
                channel=request.args.get("channel") or None,
                recipient=request.args.get("recipient") or None,
            )
        except ValueError as error:
            raise ControlError(f"bad since: {error}") from None
        return json_response(
            [entry.to_dict() for entry in entries], headers={"X-Outbox-Seq": str(self.outbox.last_seq)}
        )

    def _outbox_clear(self, request: Request, args: dict[str, str]) -> Response:
        self.outbox.clear()
        return json_response({"cleared": True, "seq": self.outbox.last_seq})

    def _faults_list(self, request: Request, args: dict[str, str]) -> Response:
        return json_response([rule.to_dict() for rule in self.faults.rules()])

    def _faults_add(self, request: Request, args: dict[str, str]) -> Response:
        try:
            rule = self.faults.add_from_dict(control_json(request))
        except ValueError as error:
            raise ControlError(str(error)) from None
        return json_response(rule.to_dict(), 201)

    def _faults_clear(self, request: Request, args: dict[str, str]) -> Response:
        self.faults.clear(request.args.get("provider") or None)
        return json_response({"cleared": True})

    def _reset(self, request: Request, args: dict[str, str]) -> Response:
        self.reset()
        return json_response({"reset": True})
