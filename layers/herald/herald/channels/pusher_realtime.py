"""Realtime in-app events through Pusher Channels with the official SDK.

One provider request per event: the trigger. Whether the channel is occupied is not asked here
(no `channel_info` per message): the realtime deliverer reads the occupancy Herald keeps from
Pusher's webhooks and only publishes to an occupied channel (`realtime_delivery`). Pusher answers
errors as plain text: 400 (bad request / too much data) → permanent; 401/403 (our credentials) and
429/5xx → retry.

Transport errors (requests, whose session retries nothing): a failure that proves the request
never left (connect timeout, refused, DNS, TLS handshake) is retried later; a read timeout or a
connection reset/closed after the request was written is `Uncertain`: the app may already show
the event, so it is never triggered again (docs/decisions/007).
"""

from __future__ import annotations

import json
import re
from typing import Any

import pusher
from pusher.errors import PusherBadAuth, PusherBadRequest, PusherBadStatus, PusherError, PusherForbidden
from requests.exceptions import RequestException

from herald.channels.ports import RealtimeEvent
from herald.channels.result import (
    AUTH,
    TRANSPORT,
    Accepted,
    PermanentFailure,
    RetryLater,
    SendResult,
    Uncertain,
    classify_http_error,
    short,
)
from herald.channels.transport import request_may_leave, requests_not_sent

PROVIDER = "pusher"
_STATUS = re.compile(r"^\s*(\d{3})\s*:")


def user_channel(user_id: str) -> str:
    return f"private-user-{user_id}"


def classify_error(
    error: BaseException, *, triggered: bool = False
) -> PermanentFailure | RetryLater | Uncertain:
    """An error from the SDK; `triggered` when it came from the trigger request (False for a
    request that triggers nothing, such as a channel read)."""
    reason = short(f"Pusher: {error}")
    if isinstance(error, PusherBadRequest):
        return PermanentFailure(PROVIDER, reason, code="400")
    if isinstance(error, PusherBadAuth | PusherForbidden):
        return RetryLater(PROVIDER, reason, code=AUTH)
    if isinstance(error, PusherBadStatus):
        match = _STATUS.match(str(error))
        status = int(match.group(1)) if match else 500
        return classify_http_error(PROVIDER, status, reason)
    if isinstance(error, json.JSONDecodeError):  # a 200 whose body is not JSON: after the trigger
        return _possibly_triggered(reason) if triggered else RetryLater(PROVIDER, reason, code="bad_answer")
    if isinstance(error, ValueError):  # the SDK refuses before sending: too much data, bad name
        return PermanentFailure(PROVIDER, reason, code="invalid")
    if triggered and not (isinstance(error, RequestException) and requests_not_sent(error)):
        return _possibly_triggered(reason)
    return RetryLater(PROVIDER, reason, code=TRANSPORT)


def _possibly_triggered(reason: str) -> Uncertain:
    return Uncertain(PROVIDER, f"the event may have been triggered (no answer after sending): {reason}")


class PusherRealtimeProvider:
    name = PROVIDER

    def __init__(
        self,
        app_id: str,
        key: str,
        secret: str,
        *,
        cluster: str | None = None,
        host: str | None = None,
        port: int | None = None,
        ssl: bool = True,
        timeout: float = 5.0,
    ) -> None:
        options: dict[str, Any] = {"ssl": ssl, "timeout": timeout}
        if host:
            options["host"] = host
        if port:
            options["port"] = int(port)
        if cluster:
            options["cluster"] = cluster
        self._client = pusher.Pusher(app_id=str(app_id), key=key, secret=secret, **options)

    @classmethod
    def from_secret(cls, secret: dict[str, Any], timeout: float = 5.0) -> PusherRealtimeProvider:
        ssl = secret.get("ssl", True)
        if isinstance(ssl, str):
            ssl = ssl.strip().lower() not in ("false", "0", "no")
        return cls(
            str(secret["app_id"]),
            str(secret["key"]),
            str(secret["secret"]),
            cluster=secret.get("cluster") or None,
            host=secret.get("host") or None,
            port=secret.get("port") or None,
            ssl=bool(ssl),
            timeout=float(timeout),
        )

    def publish(self, event: RealtimeEvent) -> SendResult:
        request_may_leave(PROVIDER)
        try:
            self._client.trigger(event.channel, event.event, dict(event.payload))
        except (PusherError, RequestException, ValueError) as error:
            return classify_error(error, triggered=True)
        return Accepted(PROVIDER, None, detail=f"triggered {event.event} on {event.channel}")
