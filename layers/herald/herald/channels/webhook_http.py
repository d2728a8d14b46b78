"""Signed webhook POSTs with urllib (no SDK), only to public https destinations.

Each request is signed with the subscriber's secret (`herald.webhook_signing`): HMAC-SHA256 over
`"{timestamp}.{raw body}"` in `X-Herald-Signature: v1=<hex>`, with `X-Herald-Timestamp` and
`Idempotency-Key` (the notification id). 2xx → accepted; 408/429 and 5xx, timeouts and
connection errors → retry later; other 4xx (and redirects, which are never followed) → permanent.

Destinations (decision 009). A subscriber's URL is someone else's input, and the sender runs
inside our AWS account: before each POST the host is resolved and EVERY address it resolves to
must be public — not loopback, private, shared (CGNAT), link-local, multicast, reserved,
unspecified or a cloud metadata address (169.254.169.254, fd00:ec2::254), IPv4-mapped and NAT64
IPv6 forms judged by the IPv4 address inside — and the scheme must be `https`. The connection then
goes to the address that was checked (never a second lookup, so DNS rebinding between the check
and the connect cannot redirect it), while TLS still sends the hostname (SNI) and verifies the
certificate against it. A refused destination is a permanent failure (`destination_refused`),
never retried. `allow_loopback` (the local stack only: `WEBHOOK_ALLOW_LOOPBACK`) admits loopback
addresses, over http or https, for the sandbox receivers; everything else is checked as always.
"""

from __future__ import annotations

import http.client
import ipaddress
import socket
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from typing import Any

from herald.channels.ports import WebhookDelivery
from herald.channels.result import (
    TRANSPORT,
    Accepted,
    PermanentFailure,
    RetryLater,
    SendResult,
    classify_http_error,
    header,
    parse_retry_after,
    short,
)
from herald.destinations import is_loopback, why_not_public
from herald.webhook_signing import EVENT_HEADER, IDEMPOTENCY_HEADER, signed_headers

PROVIDER = "webhook"
USER_AGENT = "Herald-Webhooks/1.0"
MAX_RESPONSE_BYTES = 2048
DESTINATION_REFUSED = "destination_refused"

Resolver = Callable[[str, int], Sequence[str]]


class DestinationRefused(ValueError):
    """The URL may not be called: not https, or an address that is not public."""


def resolve_host(host: str, port: int) -> list[str]:
    """Every address `host` resolves to (TCP), in the resolver's order, without duplicates."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def checked_addresses(url: str, resolve: Resolver, *, allow_loopback: bool = False) -> list[str]:
    """The addresses a POST to `url` may connect to; raises DestinationRefused.

    Raises OSError (e.g. `socket.gaierror`) when the host cannot be resolved now."""
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
    except ValueError as error:
        raise DestinationRefused(f"the webhook URL is malformed: {error}") from None
    host = parts.hostname
    if parts.scheme not in ("https", "http") or not host:
        raise DestinationRefused("the webhook URL must be an absolute https URL")
    port = port or (443 if parts.scheme == "https" else 80)
    try:
        literal: ipaddress.IPv4Address | ipaddress.IPv6Address | None = ipaddress.ip_address(host)
    except ValueError:
        literal = None
    addresses = [host] if literal is not None else list(resolve(host, port))
    if not addresses:
        raise OSError(f"{host} resolved to no address")
    loopback_only = True
    for text in addresses:
        try:
            address = ipaddress.ip_address(text)
        except ValueError:
            raise DestinationRefused(f"{host} resolves to {text!r}, not an IP address") from None
        problem = why_not_public(address)
        if problem is None:
            loopback_only = False
            continue
        if allow_loopback and is_loopback(address):
            continue
        where = host if literal is not None else f"{host} resolves to {text}, which"
        raise DestinationRefused(f"{where} is {problem}: webhooks go to public addresses only")
    if parts.scheme != "https" and not (allow_loopback and loopback_only):
        raise DestinationRefused("the webhook URL must use https")
    return addresses


def _connect_to(addresses: Sequence[str]) -> Callable[..., socket.socket]:
    """A `socket.create_connection` that ignores the host it is given and tries `addresses`."""

    def create_connection(
        address: tuple[str, int], timeout: Any = socket._GLOBAL_DEFAULT_TIMEOUT, source_address: Any = None
    ) -> socket.socket:
        last: OSError | None = None
        for pinned in addresses:
            try:
                return socket.create_connection((pinned, address[1]), timeout, source_address)
            except OSError as error:
                last = error
        raise last or OSError("no address to connect to")

    return create_connection


class _PinnedHTTPConnection(http.client.HTTPConnection):
    def __init__(self, host: str, *, addresses: Sequence[str], **kwargs: Any) -> None:
        super().__init__(host, **kwargs)
        self._create_connection = _connect_to(addresses)


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    """Connects to the checked addresses; TLS SNI and certificate checks use the URL's hostname."""

    def __init__(self, host: str, *, addresses: Sequence[str], **kwargs: Any) -> None:
        super().__init__(host, **kwargs)
        self._create_connection = _connect_to(addresses)


class _PinnedHTTPHandler(urllib.request.HTTPHandler):
    def __init__(self, addresses: Sequence[str]) -> None:
        super().__init__()
        self._addresses = addresses

    def http_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        return self.do_open(_pinned(_PinnedHTTPConnection, self._addresses), req)


class _PinnedHTTPSHandler(urllib.request.HTTPSHandler):
    def __init__(self, addresses: Sequence[str], context: ssl.SSLContext | None) -> None:
        super().__init__(context=context)
        self._addresses = addresses

    def https_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        return self.do_open(
            _pinned(_PinnedHTTPSConnection, self._addresses),
            req,
            context=self._context,  # type: ignore[attr-defined]
        )


def _pinned(cls: type[http.client.HTTPConnection], addresses: Sequence[str]) -> Any:
    def factory(host: str, **kwargs: Any) -> http.client.HTTPConnection:
        return cls(host, addresses=addresses, **kwargs)  # type: ignore[call-arg]

    return factory


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # a 3xx surfaces as an HTTPError: a moved endpoint must be reconfigured


class UrllibWebhookTransport:
    name = PROVIDER

    def __init__(
        self,
        timeout: float = 10.0,
        clock: Callable[[], float] = time.time,
        *,
        allow_loopback: bool = False,
        resolve: Resolver = resolve_host,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self._timeout = timeout
        self._clock = clock
        self._allow_loopback = allow_loopback
        self._resolve = resolve
        self._ssl_context = ssl_context

    def headers(self, delivery: WebhookDelivery) -> dict[str, str]:
        return {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            IDEMPOTENCY_HEADER: delivery.idempotency_key,
            EVENT_HEADER: delivery.event_type,
            **signed_headers(delivery.secret, delivery.body, now=self._clock()),
        }

    def _opener(self, addresses: Sequence[str]) -> urllib.request.OpenerDirector:
        # direct connections only (no proxy from the environment), no redirects, checked addresses
        if self._ssl_context is None:  # once per container: loading the CA bundle takes a while
            self._ssl_context = ssl.create_default_context()  # verifies the chain and the hostname
        return urllib.request.build_opener(
            urllib.request.ProxyHandler({}),
            _NoRedirects(),
            _PinnedHTTPHandler(addresses),
            _PinnedHTTPSHandler(addresses, self._ssl_context),
        )

    def post(self, delivery: WebhookDelivery) -> SendResult:
        try:
            addresses = checked_addresses(delivery.url, self._resolve, allow_loopback=self._allow_loopback)
        except DestinationRefused as refused:
            return PermanentFailure(
                PROVIDER, short(f"destination refused: {refused}"), code=DESTINATION_REFUSED
            )
        except (OSError, UnicodeError) as error:
            return RetryLater(PROVIDER, f"cannot resolve the receiver's host: {short(error)}", code=TRANSPORT)
        request = urllib.request.Request(
            delivery.url, data=delivery.body, headers=self.headers(delivery), method="POST"
        )
        try:
            with self._opener(addresses).open(request, timeout=self._timeout) as response:
                status = response.status
                request_id = response.headers.get("X-Request-Id")
                response.read(MAX_RESPONSE_BYTES)
        except urllib.error.HTTPError as error:
            try:
                text = error.read(MAX_RESPONSE_BYTES).decode("utf-8", errors="replace")
            except (OSError, http.client.HTTPException):
                text = ""
            finally:
                error.close()
            retry_after = parse_retry_after(header(dict(error.headers.items()), "Retry-After"))
            return classify_http_error(
                PROVIDER,
                error.code,
                short(f"receiver answered {error.code}: {text or error.reason}"),
                retry_after=retry_after,
                auth_is_transient=False,  # a receiver refusing our signature is the receiver's answer
            )
        except (urllib.error.URLError, TimeoutError, OSError, http.client.HTTPException) as error:
            reason = getattr(error, "reason", error)
            return RetryLater(PROVIDER, f"receiver unreachable: {short(reason)}", code=TRANSPORT)
        if 200 <= status < 300:
            return Accepted(PROVIDER, request_id, detail=f"receiver answered {status}")
        return classify_http_error(PROVIDER, status, f"receiver answered {status}", auth_is_transient=False)
