"""Push through Firebase Cloud Messaging (HTTP v1) with firebase-admin.

One message per device token (`send_each`, which makes one HTTP call per token, concurrently).
The visible part (`notification` title/body) is the push render, which never contains the
catalog's sensitive fields; the data payload carries only identifiers (`notification_id`, type)
so the app fetches the rest from the inbox over an authenticated call.

Errors: `UNREGISTERED` (404), `SENDER_ID_MISMATCH` and an invalid registration token (400
INVALID_ARGUMENT about the token) → the token is dead: permanent for that token plus a
`dead_tokens` effect (the sender deletes it from the profile and suppresses it);
`QUOTA_EXCEEDED` (429), `UNAVAILABLE` (503), `INTERNAL` (500), timeouts → retry later; any other
INVALID_ARGUMENT (the payload) → permanent.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Sequence
from typing import Any

import firebase_admin
from firebase_admin import credentials, exceptions, messaging

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
    header,
    parse_retry_after,
    short,
)

PROVIDER = "fcm"
FCM_ERROR_TYPE = "type.googleapis.com/google.firebase.fcm.v1.FcmError"
BAD_REQUEST_TYPE = "type.googleapis.com/google.rpc.BadRequest"
MAX_BATCH = 500
_app_names = itertools.count(1)


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


def classify_error(error: BaseException, token: str) -> PermanentFailure | RetryLater:
    """One token's send error from firebase-admin, as a result."""
    if not isinstance(error, exceptions.FirebaseError):
        return RetryLater(PROVIDER, f"FCM call failed: {short(error)}", code=TRANSPORT)
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
        if self._fcm_url:
            # firebase-admin has no endpoint option: aim this app's service at the configured URL
            service._fcm_url = self._fcm_url
        return service

    def send(self, push: PushNotification, tokens: Sequence[str]) -> list[SendResult]:
        results: list[SendResult] = []
        service = self._service()
        for start in range(0, len(tokens), MAX_BATCH):
            chunk = list(tokens[start : start + MAX_BATCH])
            try:
                batch = service.send_each([build_message(push, token) for token in chunk])
            except exceptions.FirebaseError as error:  # the whole batch failed (e.g. OAuth token)
                results += [classify_error(error, token) for token in chunk]
                continue
            for token, response in zip(chunk, batch.responses, strict=True):
                if response.success:
                    results.append(Accepted(PROVIDER, response.message_id))
                else:
                    results.append(classify_error(response.exception, token))
        return results

    def close(self) -> None:
        firebase_admin.delete_app(self._app)
