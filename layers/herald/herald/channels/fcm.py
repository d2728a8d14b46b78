"""Push through Firebase Cloud Messaging (HTTP v1) with firebase-admin.

One message per device token, one HTTP call each (concurrently, as firebase-admin's `send_each`
does). The visible part (`notification` title/body) is the push render, which never contains the
catalog's sensitive fields; the data payload carries only identifiers (`notification_id`, type)
so the app fetches the rest from the inbox over an authenticated call.

Answers: `UNREGISTERED` (404), `SENDER_ID_MISMATCH` and an invalid registration token (400
INVALID_ARGUMENT about the token) → the token is dead: permanent for that token plus a
`dead_tokens` effect (the sender deletes it from the profile and suppresses it);
`QUOTA_EXCEEDED` (429), `UNAVAILABLE` (503), `INTERNAL` (500) → retry later; any other
INVALID_ARGUMENT (the payload) → permanent.

No answer (docs/decisions/007): firebase-admin's HTTP session retries a *read* error once by
default (`DEFAULT_RETRY_CONFIG`: `read=1`, for POST too), which resends a push FCM may already
have delivered. The session's adapters are replaced with `SEND_RETRY`: connection errors (the
request never left) are retried inside the SDK once; answers and read errors never are. A
token whose request provably never left (connect timeout, refused, DNS, TLS handshake, the OAuth
token could not be fetched) is retried later; one whose request may have reached FCM (read
timeout, reset after writing, an unexpected error) is `Uncertain` and never resent.

Each token's outcome is kept on its own: firebase-admin's `send_each` turns any error it does not
expect in one thread into an error for the whole batch, losing the tokens that were accepted, so
the calls are made here, one `send` per token.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import urlsplit

import firebase_admin
import google.auth.exceptions
import requests
from firebase_admin import credentials, exceptions, messaging
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from herald.channels.ports import PushNotification
from herald.channels.result import (
    AUTH,
    DEAD_TOKEN,
    TRANSPORT,
    Accepted,
    Effects,
    PermanentFailure,
    RetryLater,
    SendResult,
    Uncertain,
    header,
    parse_retry_after,
    short,
)
from herald.channels.transport import request_may_leave, requests_not_sent

PROVIDER = "fcm"
FCM_ERROR_TYPE = "type.googleapis.com/google.firebase.fcm.v1.FcmError"
BAD_REQUEST_TYPE = "type.googleapis.com/google.rpc.BadRequest"
MAX_CONCURRENT_CALLS = 16
_app_names = itertools.count(1)
# firebase-admin's DEFAULT_RETRY_CONFIG reduced to what cannot send twice: reconnect once when the
# connection could not be opened; never resend after a read error (read timeout, reset after the
# request was written) nor after any other error once the request left; and no status retries
# inside the SDK: a 500 may come after FCM took the push, and 503/429 answers go back to the
# sender, whose time-budgeted backoff (decision 010) sees them and honours Retry-After (urllib3
# would sleep as long as it says, past the invocation's deadline).
SEND_RETRY = Retry(
    total=None,
    connect=1,
    read=False,
    redirect=0,
    status=0,
    other=0,
    status_forcelist=(),
    raise_on_status=False,
    allowed_methods=None,
    respect_retry_after_header=False,
)


def build_message(push: PushNotification, token: str) -> messaging.Message:
    return messaging.Message(
        token=token,
        notification=messaging.Notification(title=push.title, body=push.body),
        data={str(k): str(v) for k, v in push.data.items()},
        android=messaging.AndroidConfig(
            priority=push.android_priority,
            collapse_key=push.collapse_key,
            notification=messaging.AndroidNotification(channel_id=push.android_channel),
        ),
        apns=messaging.APNSConfig(
            headers={"apns-priority": str(push.apns_priority), "apns-push-type": "alert"},
            payload=messaging.APNSPayload(aps=messaging.Aps(sound="default")),
        ),
    )


def _error_body(error: exceptions.FirebaseError) -> dict[str, Any]:
    response = error.http_response
    if response is None:
        return {}
    try:
        body = response.json()
    except ValueError:
        return {}
    found = body.get("error") if isinstance(body, dict) else None
    return found if isinstance(found, dict) else {}


def _fcm_error_code(body: dict[str, Any]) -> str | None:
    for detail in body.get("details") or []:
        if isinstance(detail, dict) and detail.get("@type") == FCM_ERROR_TYPE:
            return detail.get("errorCode")
    return None


def _about_the_token(error: exceptions.FirebaseError, body: dict[str, Any]) -> bool:
    """Is this INVALID_ARGUMENT about the registration token (not the payload)?"""
    for detail in body.get("details") or []:
        if isinstance(detail, dict) and detail.get("@type") == BAD_REQUEST_TYPE:
            for violation in detail.get("fieldViolations") or []:
                if isinstance(violation, dict) and violation.get("field") == "message.token":
                    return True
    text = f"{body.get('message') or ''} {error}".lower()
    return "registration token" in text and ("not a valid" in text or "invalid" in text)


def classify_error(error: BaseException, token: str) -> PermanentFailure | RetryLater | Uncertain:
    """One token's send error from firebase-admin (or google-auth), as a result."""
    if isinstance(error, google.auth.exceptions.GoogleAuthError):
        # the OAuth token could not be had: the FCM request was never made
        code = AUTH if isinstance(error, google.auth.exceptions.RefreshError) else TRANSPORT
        return RetryLater(PROVIDER, f"FCM access token unavailable: {short(error)}", code=code)
    if not isinstance(error, exceptions.FirebaseError):
        return Uncertain(
            PROVIDER, f"FCM may have the push (unexpected error after sending): {short(repr(error))}"
        )
    cause = error.cause
    if isinstance(cause, requests.RequestException) and cause.response is None:
        return _without_answer(cause)  # firebase-admin wrapped a requests error: no answer from FCM
    body = _error_body(error)
    code = _fcm_error_code(body) or str(error.code)
    reason = short(f"{code}: {error}")
    dead = Effects(dead_tokens=(token,))
    if isinstance(error, messaging.UnregisteredError | messaging.SenderIdMismatchError):
        return PermanentFailure(PROVIDER, reason, code=DEAD_TOKEN, effects=dead)
    if isinstance(error, exceptions.InvalidArgumentError):
        if _about_the_token(error, body):
            return PermanentFailure(PROVIDER, reason, code=DEAD_TOKEN, effects=dead)
        return PermanentFailure(PROVIDER, reason, code="INVALID_ARGUMENT")
    retry_after = None
    if error.http_response is not None:
        retry_after = parse_retry_after(header(dict(error.http_response.headers), "Retry-After"))
    if isinstance(error, messaging.QuotaExceededError | exceptions.ResourceExhaustedError):
        return RetryLater(PROVIDER, reason, retry_after=retry_after, code="QUOTA_EXCEEDED")
    if isinstance(
        error,
        exceptions.UnavailableError
        | exceptions.InternalError
        | exceptions.DeadlineExceededError
        | exceptions.UnknownError
        | exceptions.AbortedError,
    ):
        return RetryLater(PROVIDER, reason, retry_after=retry_after, code=code)
    if isinstance(
        error,
        exceptions.UnauthenticatedError | exceptions.PermissionDeniedError | messaging.ThirdPartyAuthError,
    ):
        return RetryLater(PROVIDER, reason, code=AUTH)  # our credentials / APNs key: operator's fix
    return PermanentFailure(PROVIDER, reason, code=code)


def _without_answer(cause: requests.RequestException) -> RetryLater | Uncertain:
    """No answer from FCM: did the request leave?"""
    if requests_not_sent(cause):
        return RetryLater(PROVIDER, f"FCM unreachable: {short(cause)}", code=TRANSPORT)
    return Uncertain(PROVIDER, f"FCM may have the push (no answer after sending): {short(cause)}")


class FcmPushProvider:
    name = PROVIDER

    def __init__(
        self, service_account: dict[str, Any], fcm_url: str | None = None, timeout: float = 10.0
    ) -> None:
        project_id = service_account.get("project_id")
        self._app = firebase_admin.initialize_app(
            credentials.Certificate(service_account),
            {"projectId": project_id, "httpTimeout": timeout},
            name=f"herald-fcm-{next(_app_names)}",
        )
        self._fcm_url = fcm_url

    @classmethod
    def from_secret(cls, secret: dict[str, Any], timeout: float = 10.0) -> FcmPushProvider:
        account = secret["service_account"]
        if isinstance(account, str):
            account = json.loads(account)
        return cls(dict(account), fcm_url=secret.get("fcm_url") or None, timeout=timeout)

    def _service(self) -> Any:
        service = messaging._get_messaging_service(self._app)
        if getattr(service, "_herald_configured", False):
            return service
        if self._fcm_url:
            # firebase-admin has no endpoint option: aim this app's service at the configured URL
            service._fcm_url = self._fcm_url
        without_read_retries(service._client.session, service._fcm_url)
        service._herald_configured = True
        return service

    def send(self, push: PushNotification, tokens: Sequence[str]) -> list[SendResult]:
        if not tokens:
            return []
        service = self._service()
        messages = []
        for token in tokens:
            message = build_message(push, token)
            try:
                messaging._MessagingService.encode_message(message)
            except ValueError as error:  # the SDK refuses the payload before sending anything
                return [PermanentFailure(PROVIDER, short(error), code="INVALID_ARGUMENT") for _ in tokens]
            messages.append(message)
        request_may_leave(PROVIDER)
        workers = min(MAX_CONCURRENT_CALLS, len(messages))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="fcm") as pool:
            futures = [pool.submit(service.send, message) for message in messages]
        return [self._outcome(future, token) for future, token in zip(futures, tokens, strict=True)]

    @staticmethod
    def _outcome(future: Any, token: str) -> SendResult:
        """One token's result; an exception there concerns that token alone."""
        try:
            return Accepted(PROVIDER, future.result())
        except Exception as error:  # classified: an error Herald does not know is Uncertain
            return classify_error(error, token)

    def close(self) -> None:
        firebase_admin.delete_app(self._app)


def without_read_retries(session: requests.Session, fcm_url: str | None = None) -> None:
    """Replace every adapter firebase-admin mounted on `session` (`http://`, `https://`, and its
    pooled one for `https://fcm.googleapis.com`) by one that never retries after a read error."""
    prefixes = set(session.adapters)
    if fcm_url:
        parts = urlsplit(fcm_url)
        prefixes.add(f"{parts.scheme}://{parts.netloc}")
    for prefix in prefixes:
        session.mount(
            prefix,
            HTTPAdapter(pool_connections=10, pool_maxsize=100, max_retries=SEND_RETRY),
        )
