"""Shared HTTP plumbing for the sandboxes: routes, responses and loopback-only outbound calls."""

from __future__ import annotations

import ipaddress
import json
import logging
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol
from urllib.parse import urlsplit

from werkzeug.wrappers import Request, Response

logger = logging.getLogger("local.sandboxes")

Handler = Callable[[Request, dict[str, str]], Response]
RecipientsOf = Callable[[Request, dict[str, str]], list[str]]

LOOPBACK_HOSTNAMES = frozenset({"localhost", "127.0.0.1", "::1"})


@dataclass(frozen=True)
class Route:
    """One URL rule of the host. `provider` names the fault domain (None for control endpoints)."""

    path: str
    methods: tuple[str, ...]
    handler: Handler
    provider: str | None = None
    recipients: RecipientsOf | None = None


class Provider(Protocol):
    """What the host needs from a provider sandbox."""

    name: str

    def routes(self) -> list[Route]: ...

    def fault_response(self, status: int) -> Response: ...


def json_response(data: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    return Response(
        json.dumps(data, separators=(",", ":")),
        status=status,
        headers=dict(headers or {}),
        content_type="application/json; charset=utf-8",
    )


def text_response(text: str, status: int, headers: Mapping[str, str] | None = None) -> Response:
    return Response(
        text, status=status, headers=dict(headers or {}), content_type="text/plain; charset=utf-8"
    )


def empty_response(status: int, headers: Mapping[str, str] | None = None) -> Response:
    response = Response(b"", status=status, headers=dict(headers or {}))
    response.headers.pop("Content-Type", None)
    return response


def read_json(request: Request) -> Any:
    """The request body parsed as JSON; raises ValueError when it is not JSON."""
    raw = request.get_data(cache=True)
    if not raw:
        raise ValueError("empty body")
    return json.loads(raw)


def read_json_object(request: Request) -> dict[str, Any] | None:
    """The body as a JSON object, or None when it is missing, malformed or not an object."""
    try:
        data = read_json(request)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def utc_now() -> datetime:
    return datetime.now(UTC)


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def parse_iso(text: str) -> datetime:
    moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00").replace(" ", "+"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def is_loopback_url(url: str) -> bool:
    parts = urlsplit(url)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        return False
    if parts.hostname in LOOPBACK_HOSTNAMES:
        return True
    try:
        return ipaddress.ip_address(parts.hostname).is_loopback
    except ValueError:
        return False


def require_loopback_url(url: str) -> str:
    if not is_loopback_url(url):
        raise ValueError(f"refusing a non-loopback URL: {url!r} (the sandboxes only call 127.0.0.1)")
    return url


@dataclass(frozen=True)
class WebhookDelivery:
    """An outbound call a sandbox made (occupancy webhook, status callback, event batch...)."""

    url: str
    request_headers: dict[str, str]
    request_body: str
    status: int | None
    response_body: str = ""
    error: str | None = None
    time: str = field(default_factory=lambda: iso(utc_now()))

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    def to_dict(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "status": self.status,
            "ok": self.ok,
            "error": self.error,
            "time": self.time,
            "request_headers": self.request_headers,
            "request_body": self.request_body,
            "response_body": self.response_body,
        }


# Never route sandbox callbacks through a proxy taken from the environment.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def post_loopback(
    url: str, body: bytes, headers: Mapping[str, str], timeout: float = 10.0
) -> WebhookDelivery:
    """POST `body` to a loopback URL and report what happened; never raises for HTTP or socket errors."""
    require_loopback_url(url)
    sent_headers = dict(headers)
    request = urllib.request.Request(url, data=body, headers=sent_headers, method="POST")
    text = body.decode("utf-8", errors="replace")
    started = time.monotonic()
    try:
        with _OPENER.open(request, timeout=timeout) as reply:
            delivery = WebhookDelivery(
                url, sent_headers, text, reply.status, reply.read().decode("utf-8", "replace")
            )
    except urllib.error.HTTPError as error:
        delivery = WebhookDelivery(
            url, sent_headers, text, error.code, error.read().decode("utf-8", "replace")
        )
    except (urllib.error.URLError, OSError) as error:
        delivery = WebhookDelivery(url, sent_headers, text, None, error=str(error))
    logger.info(
        "callback POST %s -> %s (%.0f ms)",
        url,
        delivery.status if delivery.status is not None else delivery.error,
        (time.monotonic() - started) * 1000,
    )
    return delivery


class ControlError(Exception):
    """A bad call to a control endpoint (`/_...`): answered as `{"error": message}`."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


def control_json(request: Request, *required: str) -> dict[str, Any]:
    """The JSON object body of a control request, with `required` keys present."""
    data = read_json_object(request)
    if data is None:
        raise ControlError("expected a JSON object body")
    missing = [key for key in required if data.get(key) in (None, "")]
    if missing:
        raise ControlError(f"missing fields: {', '.join(missing)}")
    return data
