"""Fixtures: one sandbox host per session (port 0), the real provider SDKs aimed at it, and a
capture server standing in for Herald's webhook endpoints."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl

import firebase_admin
import pusher
import pytest
from firebase_admin import credentials as firebase_credentials
from firebase_admin import messaging
from sendgrid import SendGridAPIClient
from twilio.http.http_client import TwilioHttpClient
from twilio.rest import Client as TwilioClient

from local.sandboxes import SandboxHost, google_auth_on_loopback


class LoopbackTwilioHttpClient(TwilioHttpClient):
    """How the real `twilio.rest.Client` is aimed at the sandbox: rewrite `https://*.twilio.com`."""

    def __init__(self, base_url: str) -> None:
        super().__init__()
        self.base_url = base_url.rstrip("/")

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        for origin in ("https://api.twilio.com", "https://messaging.twilio.com"):
            if url.startswith(origin):
                url = self.base_url + url[len(origin) :]
        return super().request(method, url, *args, **kwargs)


@dataclass(frozen=True)
class Captured:
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode()

    @property
    def form(self) -> dict[str, str]:
        return dict(parse_qsl(self.text, keep_blank_values=True))


class CaptureServer:
    """A loopback HTTP server that records every POST and answers 200 (stands in for Herald)."""

    def __init__(self) -> None:
        captured: list[Captured] = []
        lock = threading.Lock()
        self._captured = captured
        self._lock = lock

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                with lock:
                    captured.append(Captured(self.path, dict(self.headers.items()), body))
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(b'{"ok":true}')

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def requests(self, path: str | None = None) -> list[Captured]:
        with self._lock:
            return [item for item in self._captured if path is None or item.path == path]

    def wait(self, path: str, count: int = 1, timeout: float = 5.0) -> list[Captured]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.requests(path)
            if len(found) >= count:
                return found
            time.sleep(0.02)
        raise AssertionError(f"expected {count} request(s) on {path}, got {self.requests(path)}")

    def clear(self) -> None:
        with self._lock:
            self._captured.clear()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture(scope="session")
def sandbox() -> Iterator[SandboxHost]:
    host = SandboxHost(port=0, receivers=("default", "billing")).start()
    try:
        yield host
    finally:
        host.stop()


@pytest.fixture(autouse=True)
def _fresh_sandbox(sandbox: SandboxHost) -> Iterator[None]:
    sandbox.reset()
    sandbox.pusher.webhook_url = None
    yield
    sandbox.faults.clear()


@pytest.fixture(scope="session")
def _capture_server() -> Iterator[CaptureServer]:
    server = CaptureServer()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def capture(_capture_server: CaptureServer) -> CaptureServer:
    _capture_server.clear()
    return _capture_server


@pytest.fixture(scope="session")
def pusher_client(sandbox: SandboxHost) -> pusher.Pusher:
    creds = sandbox.credentials.pusher
    return pusher.Pusher(
        creds.app_id, creds.key, creds.secret, host="127.0.0.1", port=sandbox.port, ssl=False
    )


@pytest.fixture(scope="session")
def twilio_client(sandbox: SandboxHost) -> TwilioClient:
    creds = sandbox.credentials.twilio
    return TwilioClient(
        creds.account_sid, creds.auth_token, http_client=LoopbackTwilioHttpClient(sandbox.url)
    )


@pytest.fixture(scope="session")
def twilio_client_factory(sandbox: SandboxHost) -> Any:
    def make(account_sid: str, auth_token: str) -> TwilioClient:
        return TwilioClient(account_sid, auth_token, http_client=LoopbackTwilioHttpClient(sandbox.url))

    return make


@pytest.fixture(scope="session")
def sendgrid_client(sandbox: SandboxHost) -> SendGridAPIClient:
    return SendGridAPIClient(sandbox.credentials.sendgrid.api_key, host=sandbox.url)


@pytest.fixture(scope="session")
def fcm_url(sandbox: SandboxHost) -> Iterator[str]:
    """firebase-admin has no endpoint option: the class attribute is read when an app's messaging
    service is first created, so set it before the first send (and put it back afterwards)."""
    original = messaging._MessagingService.FCM_URL
    messaging._MessagingService.FCM_URL = sandbox.credentials.fcm_url
    try:
        yield sandbox.credentials.fcm_url
    finally:
        messaging._MessagingService.FCM_URL = original


@pytest.fixture(scope="session")
def google_offline() -> Iterator[None]:
    """No background Regional Access Boundary lookups at iamcredentials.googleapis.com."""
    with google_auth_on_loopback():
        yield


@pytest.fixture(scope="session")
def firebase_app(sandbox: SandboxHost, fcm_url: str, google_offline: None) -> Iterator[firebase_admin.App]:
    cert = firebase_credentials.Certificate(dict(sandbox.credentials.fcm.service_account))
    app = firebase_admin.initialize_app(cert, name=f"sandbox-{sandbox.port}")
    try:
        yield app
    finally:
        firebase_admin.delete_app(app)
