"""Push through Firebase Cloud Messaging (HTTP v1) with firebase-admin.

One message per device token, one HTTP call each: HTTP v1 has no batch endpoint. `send_batch`
sends every message of a batch of pushes (all the records of an SQS batch, decision 026) at once,
at most `MAX_CONCURRENT_CALLS` in flight, from one pool of threads kept for the life of the
execution environment. The visible part (`notification` title/body) is the push render, which
never contains the catalog's sensitive fields; the data payload carries only identifiers
(`notification_id`, type) so the app fetches the rest from the inbox over an authenticated call.

Presentation (the catalog's `push` block): Android notification channel, sound, badge
(`notification_count`), tag and collapse key, TTL; APNs priority, push type, collapse id,
expiration, sound (a critical sound for `critical`), category, `interruption-level`, and
`mutable-content` so the app's extension can increment its badge. A data-only push has no
`notification`: on Android the app's messaging service renders it, on iOS it is a background push
(`content-available`, `apns-push-type: background`, priority 5, as Apple requires).

FCM refuses a message whose payload exceeds 4096 bytes; Herald measures the payload each platform
delivers (`payload_bytes`) before sending, and a push over the limit is a `PermanentFailure` with
code `payload_too_large`, with no request made.

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

import functools
import itertools
import json
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import Any
from urllib.parse import urlsplit

import firebase_admin
import google.auth.exceptions
import google.auth.transport.requests
import requests
from firebase_admin import credentials, exceptions, messaging
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from herald.channels.ports import PushBatchItem, PushNotification
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
from herald.tracing import in_current_trace

PROVIDER = "fcm"
FCM_ERROR_TYPE = "type.googleapis.com/google.firebase.fcm.v1.FcmError"
BAD_REQUEST_TYPE = "type.googleapis.com/google.rpc.BadRequest"
# Calls in flight at once: the largest batch (10 records x MAX_DEVICES_PER_USER = 20) in one round
# trip, so a batch takes at most one provider timeout (x3: connect, reconnect, read), never two waves
# of them. The session's connection pool holds as many connections (`without_read_retries`).
MAX_CONCURRENT_CALLS = 200
# FCM's limit on a message's payload (notification and data), and APNs' on its JSON payload.
MAX_PAYLOAD_BYTES = 4096
PAYLOAD_TOO_LARGE = "payload_too_large"
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


def build_message(push: PushNotification, token: str, *, now: float | None = None) -> messaging.Message:
    """The FCM v1 message of `push` for one device token (`now`: epoch seconds for APNs'
    expiration, default the current time)."""
    data = {str(k): str(v) for k, v in push.data.items()}
    apns_headers = {"apns-priority": str(push.apns_priority), "apns-push-type": "alert"}
    if push.collapse_key:
        apns_headers["apns-collapse-id"] = push.collapse_key
    if push.ttl_seconds is not None:
        # APNs: 0 means "now or never"; otherwise the moment it stops trying
        sent_at = int(now if now is not None else time.time())
        expires = 0 if push.ttl_seconds == 0 else sent_at + push.ttl_seconds
        apns_headers["apns-expiration"] = str(expires)
    android = messaging.AndroidConfig(
        priority=push.android_priority,
        collapse_key=push.collapse_key if push.collapsible else None,
        ttl=push.ttl_seconds,
    )
    if push.data_only:
        # nothing for the system to show: the app renders it from `data` (decision 026)
        apns_headers |= {"apns-priority": "5", "apns-push-type": "background"}  # Apple requires both
        return messaging.Message(
            token=token,
            data=data,
            android=android,
            apns=messaging.APNSConfig(
                headers=apns_headers, payload=messaging.APNSPayload(aps=messaging.Aps(content_available=True))
            ),
        )
    increment = push.badge == "increment"
    android.notification = messaging.AndroidNotification(
        channel_id=push.android_channel,
        default_sound=True if push.sound == "default" else None,
        sound=_android_sound(push.sound),
        tag=push.collapse_key,  # the newer notification replaces the shown one with the same key
        notification_count=1 if increment else None,
    )
    sound: str | messaging.CriticalSound | None = push.sound
    if push.sound and push.interruption_level == "critical":
        sound = messaging.CriticalSound(push.sound, critical=True)
    aps = messaging.Aps(
        sound=sound,
        category=push.apns_category,
        mutable_content=True if increment else None,  # the app's extension increments its badge
        custom_data={"interruption-level": push.interruption_level},
    )
    return messaging.Message(
        token=token,
        notification=messaging.Notification(title=push.title, body=push.body),
        data=data,
        android=android,
        apns=messaging.APNSConfig(headers=apns_headers, payload=messaging.APNSPayload(aps=aps)),
    )


def _android_sound(sound: str | None) -> str | None:
    """Android names a raw resource without its extension; `default` is `default_sound`."""
    if sound is None or sound == "default":
        return None
    return sound.rsplit(".", 1)[0]


def payload_bytes(encoded: dict[str, Any]) -> int:
    """The payload of an encoded message as the larger platform delivers it: on Android the data
    and the notification's display fields, on iOS the APNs JSON (`aps`, with the notification as
    its alert, and the data as custom keys). FCM and APNs both refuse more than 4096 bytes."""
    data = encoded.get("data") or {}
    notification = encoded.get("notification") or {}
    android = (encoded.get("android") or {}).get("notification") or {}
    aps = dict(((encoded.get("apns") or {}).get("payload") or {}).get("aps") or {})
    if notification:
        aps["alert"] = notification
    sizes = (
        _json_bytes({"data": data, "notification": {**notification, **android}}),
        _json_bytes({**data, "aps": aps}),
    )
    return max(sizes)


def _json_bytes(value: Any) -> int:
    return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())


def refusal(push: PushNotification) -> PermanentFailure | None:
    """Why FCM would refuse `push` as it is, known before any request (None: it would not)."""
    try:
        encoded = messaging._MessagingService.encode_message(build_message(push, "token"))
    except ValueError as error:  # the SDK's own validation of the fields
        return PermanentFailure(PROVIDER, short(error), code="INVALID_ARGUMENT")
    size = payload_bytes(encoded)
    if size > MAX_PAYLOAD_BYTES:
        return PermanentFailure(
            PROVIDER,
            f"the push payload is {size} bytes, over FCM's limit of {MAX_PAYLOAD_BYTES}: not sent",
            code=PAYLOAD_TOO_LARGE,
        )
    return None


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
        self._timeout = timeout
        self._pool: ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()

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

    def _threads(self) -> ThreadPoolExecutor:
        """One pool for the life of the execution environment (threads start as needed)."""
        with self._pool_lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=MAX_CONCURRENT_CALLS, thread_name_prefix="fcm")
            return self._pool

    def _authorize(self, service: Any) -> None:
        """Fetch the OAuth access token once, here, when it is missing or expiring: otherwise every
        concurrent call would fetch its own. Raises google-auth's errors (no FCM request made)."""
        session = service._client.session
        creds = getattr(session, "credentials", None)
        if creds is None or creds.valid:
            return
        auth_request = getattr(session, "_auth_request", None) or google.auth.transport.requests.Request()
        creds.before_request(
            functools.partial(auth_request, timeout=self._timeout), "POST", service._fcm_url, {}
        )

    def send(self, push: PushNotification, tokens: Sequence[str]) -> list[SendResult]:
        return self.send_batch([(push, tokens)])[0]

    def send_batch(self, pushes: Sequence[PushBatchItem]) -> list[list[SendResult]]:
        results: list[list[SendResult]] = [[] for _ in pushes]
        jobs: list[tuple[int, str, messaging.Message]] = []
        now = time.time()
        for index, (push, tokens) in enumerate(pushes):
            refused = refusal(push) if tokens else None
            if refused is not None:  # the same message for every token: refused for each, unsent
                results[index] = [refused for _ in tokens]
                continue
            jobs += [(index, token, build_message(push, token, now=now)) for token in tokens]
        if not jobs:
            return results
        service = self._service()
        try:
            self._authorize(service)
        except google.auth.exceptions.GoogleAuthError as error:
            for index, token, _ in jobs:
                results[index].append(classify_error(error, token))
            return results
        request_may_leave(PROVIDER)
        pool = self._threads()
        send = in_current_trace(service.send)  # each request's subsegment under this batch's
        futures = [pool.submit(send, message) for _, _, message in jobs]
        wait(futures)
        for (index, token, _), future in zip(jobs, futures, strict=True):
            results[index].append(self._outcome(future, token))
        return results

    @staticmethod
    def _outcome(future: Future[str], token: str) -> SendResult:
        """One token's result; an exception there concerns that token alone."""
        try:
            return Accepted(PROVIDER, future.result())
        except Exception as error:  # classified: an error Herald does not know is Uncertain
            return classify_error(error, token)

    def close(self) -> None:
        with self._pool_lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True)
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
            HTTPAdapter(pool_connections=10, pool_maxsize=MAX_CONCURRENT_CALLS, max_retries=SEND_RETRY),
        )
