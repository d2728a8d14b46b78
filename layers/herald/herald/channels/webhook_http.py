"""Signed webhook POSTs with urllib (no SDK).

Each request is signed with the subscriber's secret (`herald.webhook_signing`): HMAC-SHA256 over
`"{timestamp}.{raw body}"` in `X-Herald-Signature: v1=<hex>`, with `X-Herald-Timestamp` and
`Idempotency-Key` (the notification id). 2xx → accepted; 408/429 and 5xx, timeouts and
connection errors → retry later; other 4xx (and redirects, which are never followed) → permanent.
"""

from __future__ import annotations

import http.client
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

from herald.channels.ports import WebhookDelivery
from herald.channels.result import (
    TRANSPORT,
    Accepted,
    RetryLater,
    SendResult,
    classify_http_error,
    header,
    parse_retry_after,
    short,
)
from herald.webhook_signing import EVENT_HEADER, IDEMPOTENCY_HEADER, signed_headers

PROVIDER = "webhook"
USER_AGENT = "Herald-Webhooks/1.0"
MAX_RESPONSE_BYTES = 2048


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # a 3xx surfaces as an HTTPError: a moved endpoint must be reconfigured


class UrllibWebhookTransport:
    name = PROVIDER

    def __init__(self, timeout: float = 10.0, clock: Callable[[], float] = time.time) -> None:
        self._timeout = timeout
        self._clock = clock
        # direct connections only: no proxy from the environment, no redirects
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), _NoRedirects())

    def headers(self, delivery: WebhookDelivery) -> dict[str, str]:
        return {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            IDEMPOTENCY_HEADER: delivery.idempotency_key,
            EVENT_HEADER: delivery.event_type,
            **signed_headers(delivery.secret, delivery.body, now=self._clock()),
        }

    def post(self, delivery: WebhookDelivery) -> SendResult:
        request = urllib.request.Request(
            delivery.url, data=delivery.body, headers=self.headers(delivery), method="POST"
        )
        try:
            with self._opener.open(request, timeout=self._timeout) as response:
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
