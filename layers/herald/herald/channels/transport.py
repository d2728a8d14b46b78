"""Did a failed provider call reach the provider? Transport errors sorted by what they prove.

A provider call that fails without an answer is one of two things (docs/decisions/007):

- **the request never left**: the connection was refused or timed out while connecting, the name
  did not resolve, the TLS handshake failed, our own request could not be built or signed. Sending
  again cannot duplicate anything: the adapter answers `RetryLater`.
- **the request may have reached the provider**: a read timeout, a connection reset or closed
  after the request was written, any other error once the request went out. The provider may have
  accepted it; sending again could put a second SMS or push on the person's phone: the adapter
  answers `Uncertain`, which the sender records and never resends (webhooks excepted: receivers
  deduplicate on Idempotency-Key).

Only errors that *prove* the first case are retried; everything else is uncertain.

**The point of no return.** An adapter calls `request_may_leave(provider)` right before the SDK
call that may deliver the message (after building and validating the request). The sender scopes
each attempt with `send_attempt()`; an exception that escapes the deliverer after the mark is
recorded as uncertain instead of releasing the claim for a retry (`provider_may_have_it()`).

This module needs only the standard library and urllib3 (botocore's dependency): the email sender
ships without `requests`, so requests' exceptions are imported where they are classified.
"""

from __future__ import annotations

import ssl
import urllib.error
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from urllib3 import exceptions as urllib3_errors

_request_out: ContextVar[str | None] = ContextVar("herald_request_out", default=None)


def request_may_leave(provider: str) -> None:
    """From here on, an exception from the provider call means `provider` may have the message."""
    _request_out.set(provider)


def request_answered() -> None:
    """The provider answered: an exception from here on is not about that request (e.g. before an
    email failover sends through the other provider)."""
    _request_out.set(None)


def provider_may_have_it() -> str | None:
    """The provider whose request may have left during the current attempt (None: none did)."""
    return _request_out.get()


@contextmanager
def send_attempt() -> Iterator[None]:
    """One delivery attempt: starts with no request out, and forgets the mark afterwards."""
    token = _request_out.set(None)
    try:
        yield
    finally:
        _request_out.reset(token)


# -- what an exception wraps ------------------------------------------------------------------


def _chain(error: BaseException, depth: int = 8) -> Iterator[BaseException]:
    """`error` and what it wraps: causes, contexts, exception arguments, urllib3's `reason`."""
    seen: set[int] = set()
    pending: list[tuple[BaseException, int]] = [(error, 0)]
    while pending:
        current, level = pending.pop()
        if id(current) in seen or level > depth:
            continue
        seen.add(id(current))
        yield current
        wrapped: list[Any] = [current.__cause__, current.__context__, getattr(current, "reason", None)]
        wrapped += [arg for arg in getattr(current, "args", ()) if isinstance(arg, BaseException)]
        wrapped.append(getattr(current, "original_error", None))
        for inner in wrapped:
            if isinstance(inner, BaseException):
                pending.append((inner, level + 1))


def _raised_inside(error: BaseException, function: str) -> bool:
    traceback = error.__traceback__
    while traceback is not None:
        if traceback.tb_frame.f_code.co_name == function:
            return True
        traceback = traceback.tb_next
    return False


def tls_handshake_failed(error: BaseException) -> bool:
    """An SSL error from the TLS handshake, which precedes every byte of the request.

    SSL errors while reading the answer look the same by type (urllib3 wraps both in its
    `SSLError`), so only a certificate verification error or one raised inside `do_handshake`
    counts as a handshake failure."""
    for inner in _chain(error):
        if isinstance(inner, ssl.SSLCertVerificationError):
            return True
        if isinstance(inner, ssl.SSLError) and _raised_inside(inner, "do_handshake"):
            return True
    return False


def urllib3_not_sent(error: BaseException | None) -> bool:
    """urllib3 could not connect (refused, unresolvable, connect timeout), or the TLS handshake
    failed. urllib3 raises `ConnectTimeoutError` / `NewConnectionError` (and its subclass
    `NameResolutionError`) only while opening the connection."""
    if error is None:
        return False
    if isinstance(error, urllib3_errors.ConnectTimeoutError):
        return True
    if isinstance(error, urllib3_errors.SSLError):
        return tls_handshake_failed(error)
    # urllib3 wraps an error in `ProxyError` only while it is not yet connected to the proxy
    return isinstance(error, urllib3_errors.ProxyError)


def requests_not_sent(error: BaseException) -> bool:
    """A `requests` exception that proves the request never left.

    - `ConnectTimeout`: urllib3 timed out while connecting;
    - `ConnectionError` wrapping urllib3's `MaxRetryError` whose reason is a connect failure
      (refused, DNS, connect timeout): the retries, if any, were all before the request was written;
    - `SSLError` from the handshake; a `ProxyError` (connecting to the proxy); a URL that cannot be
      requested at all.

    `ReadTimeout`, a `ConnectionError` wrapping urllib3's `ProtocolError` ("Connection aborted":
    reset or closed after the request was written) or a read error that exhausted urllib3's
    retries, `ChunkedEncodingError` and the rest may have reached the provider."""
    from requests import exceptions as rx  # here: only the requests-based senders ship it

    if isinstance(error, rx.ConnectTimeout | rx.ProxyError):
        return True
    if isinstance(error, rx.InvalidURL | rx.InvalidSchema | rx.MissingSchema | rx.URLRequired):
        return True
    if isinstance(error, rx.SSLError):
        return tls_handshake_failed(error)
    if isinstance(error, rx.ConnectionError):
        wrapped = error.args[0] if error.args else None
        if isinstance(wrapped, urllib3_errors.MaxRetryError):
            return urllib3_not_sent(wrapped.reason)
        return isinstance(wrapped, urllib3_errors.ClosedPoolError | urllib3_errors.EmptyPoolError)
    return False


def urllib_not_sent(error: BaseException) -> bool:
    """A `urllib.request` error that proves the request never left.

    `urllib.request` wraps every `OSError` raised while connecting and writing the request in
    `URLError` (refused, DNS, connect timeout, TLS handshake, a write cut short: the provider never
    saw a whole request); an error from reading the answer (`TimeoutError`, `ConnectionResetError`,
    `http.client.RemoteDisconnected`, ...) escapes unwrapped. `HTTPError` is an answer."""
    return isinstance(error, urllib.error.URLError) and not isinstance(error, urllib.error.HTTPError)
