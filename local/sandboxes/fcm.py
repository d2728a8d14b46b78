"""FCM HTTP v1 sandbox with the Google OAuth 2.0 service-account token endpoint it needs."""

from __future__ import annotations

import json
import re
import secrets
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import jwt
from werkzeug.wrappers import Request, Response

from local.sandboxes.credentials import FcmCredentials
from local.sandboxes.outbox import Outbox
from local.sandboxes.web import Route, control_json, json_response

JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
# google-auth always signs the assertion for Google's canonical token endpoint, whatever the
# service account's token_uri says; Google accepts these audiences (and so do we, plus token_uri).
GOOGLE_TOKEN_AUDIENCES = (
    "https://oauth2.googleapis.com/token",
    "https://www.googleapis.com/oauth2/v4/token",
    "https://accounts.google.com/o/oauth2/token",
)
FCM_ERROR_TYPE = "type.googleapis.com/google.firebase.fcm.v1.FcmError"
BAD_REQUEST_TYPE = "type.googleapis.com/google.rpc.BadRequest"
SEND_SCOPES = frozenset(
    {"https://www.googleapis.com/auth/firebase.messaging", "https://www.googleapis.com/auth/cloud-platform"}
)
# FCM refuses a message whose payload is over 4 KB ("Android message is too big"), as APNs does.
MAX_PAYLOAD_BYTES = 4096
MAX_TTL_SECONDS = 28 * 86400  # FCM keeps a message at most 4 weeks
DURATION = re.compile(r"^\d+(\.\d{1,9})?s$")  # a protobuf Duration in JSON ("3.5s")
MAX_APNS_COLLAPSE_ID_BYTES = 64
APNS_PRIORITIES = frozenset({"1", "5", "10"})
INVALID_ARGUMENT = "INVALID_ARGUMENT"
TOKEN_LIFETIME_SECONDS = 3600
MAX_ASSERTION_LIFETIME_SECONDS = 3600
CLOCK_SKEW_SECONDS = 300
MESSAGE_FIELDS = frozenset(
    {
        "name",
        "data",
        "notification",
        "android",
        "webpush",
        "apns",
        "fcm_options",
        "token",
        "fid",
        "topic",
        "condition",
    }
)
TARGETS = ("token", "fid", "topic", "condition")  # firebase-admin 7.7 adds `fid` (installation ID)
DEVICE_TARGETS = frozenset({"token", "fid"})
TOPIC_NAME = re.compile(r"^[a-zA-Z0-9-_.~%]{1,900}$")
STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
}


@contextmanager
def google_auth_on_loopback() -> Iterator[None]:
    """Keep google-auth from calling Google while firebase-admin talks to the sandbox.

    google-auth (2.62) starts a background "Regional Access Boundary" lookup at
    `iamcredentials.googleapis.com/.../allowedLocations` after each service-account token
    refresh; nothing in the service-account JSON turns it off without also skipping the token
    endpoint. Local stack and tests only: this disables the lookup for the block.
    """
    from google.auth import credentials as google_credentials

    owner = google_credentials.CredentialsWithRegionalAccessBoundary
    original = owner.__dict__["_is_regional_access_boundary_lookup_required"]
    owner._is_regional_access_boundary_lookup_required = lambda self: False  # type: ignore[method-assign]
    try:
        yield
    finally:
        owner._is_regional_access_boundary_lookup_required = original  # type: ignore[method-assign]


def google_error(
    status: int, message: str, *, fcm_code: str | None = None, details: list[dict[str, Any]] | None = None
) -> Response:
    """Google's `google.rpc.Status` error JSON, with FCM's `FcmError` detail when given."""
    error: dict[str, Any] = {
        "code": status,
        "message": message,
        "status": STATUS_NAMES.get(status, "UNKNOWN"),
    }
    all_details = list(details or [])
    if fcm_code:
        all_details.insert(0, {"@type": FCM_ERROR_TYPE, "errorCode": fcm_code})
    if all_details:
        error["details"] = all_details
    return json_response({"error": error}, status)


def oauth_error(error: str, description: str, status: int = 400) -> Response:
    return json_response({"error": error, "error_description": description}, status)


class FcmInvalid(Exception):
    def __init__(self, message: str, field: str | None = None, fcm_code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.fcm_code = fcm_code


@dataclass(frozen=True)
class AccessToken:
    token: str
    client_email: str
    project_id: str
    scopes: frozenset[str]
    expires_at: float


class OAuthSandbox:
    """`oauth2.googleapis.com/token`: the JWT-bearer grant for service accounts."""

    name = "oauth"

    def __init__(self, fcm: FcmCredentials) -> None:
        self.fcm = fcm
        self._tokens: dict[str, AccessToken] = {}
        self._lock = threading.Lock()

    def routes(self) -> list[Route]:
        return [Route("/token", ("POST",), self._token, "oauth")]

    def fault_response(self, status: int) -> Response:
        if status == 429 or status >= 500:
            return oauth_error("temporarily_unavailable", "The service is currently unavailable.", status)
        return oauth_error("invalid_request", f"Error {status}", status)

    def lookup(self, token: str) -> AccessToken | None:
        now = time.time()
        with self._lock:
            found = self._tokens.get(token)
        return found if found and found.expires_at > now else None

    def issue(self, scopes: frozenset[str] = SEND_SCOPES) -> AccessToken:
        """An access token for the sandbox's service account, without the JWT round trip."""
        token = AccessToken(
            token="ya29.c." + secrets.token_urlsafe(96),
            client_email=self.fcm.client_email,
            project_id=self.fcm.project_id,
            scopes=scopes,
            expires_at=time.time() + TOKEN_LIFETIME_SECONDS,
        )
        with self._lock:
            self._tokens[token.token] = token
        return token

    def _token(self, request: Request, args: dict[str, str]) -> Response:
        grant_type = request.form.get("grant_type")
        if grant_type != JWT_BEARER:
            return oauth_error("unsupported_grant_type", f"Invalid grant_type: {grant_type or ''}")
        assertion = request.form.get("assertion", "")
        try:
            unverified = jwt.decode(assertion, options={"verify_signature": False})
        except jwt.PyJWTError:
            return oauth_error("invalid_request", "Invalid JWT: malformed assertion")
        if unverified.get("iss") != self.fcm.client_email:
            return oauth_error("invalid_grant", "Invalid grant: account not found")
        try:
            claims = jwt.decode(
                assertion,
                self.fcm.public_key,
                algorithms=["RS256"],
                audience=[self.fcm.token_uri, *GOOGLE_TOKEN_AUDIENCES],
                issuer=self.fcm.client_email,
                options={"require": ["iss", "aud", "iat", "exp"]},
                leeway=CLOCK_SKEW_SECONDS,
            )
        except jwt.InvalidSignatureError:
            return oauth_error("invalid_grant", "Invalid JWT Signature.")
        except jwt.InvalidAudienceError:
            return oauth_error(
                "invalid_grant", "Invalid JWT: audience must be https://oauth2.googleapis.com/token"
            )
        except jwt.ExpiredSignatureError:
            return oauth_error(
                "invalid_grant",
                "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe. "
                "Check your iat and exp values in the JWT claim.",
            )
        except jwt.PyJWTError as error:
            return oauth_error("invalid_grant", f"Invalid JWT: {error}")
        if claims["exp"] - claims["iat"] > MAX_ASSERTION_LIFETIME_SECONDS:
            return oauth_error(
                "invalid_grant", "Invalid JWT: Token must be a short-lived token (60 minutes)."
            )
        scopes = frozenset(str(claims.get("scope", "")).split())
        if not scopes:
            return oauth_error("invalid_scope", "Invalid OAuth scope or ID token audience provided.")
        token = self.issue(scopes)
        return json_response(
            {"access_token": token.token, "expires_in": TOKEN_LIFETIME_SECONDS, "token_type": "Bearer"},
            headers={"Cache-Control": "no-cache, no-store, max-age=0, must-revalidate"},
        )


class FcmSandbox:
    """`fcm.googleapis.com/v1/projects/{p}/messages:send`, bearer tokens from `OAuthSandbox`."""

    name = "fcm"

    def __init__(self, credentials: FcmCredentials, oauth: OAuthSandbox, outbox: Outbox) -> None:
        self.credentials = credentials
        self.oauth = oauth
        self.outbox = outbox
        self._unregistered: set[str] = set()
        self._lock = threading.Lock()

    def mark_unregistered(self, token: str) -> None:
        """The app was uninstalled: sends to `token` now get 404 UNREGISTERED."""
        with self._lock:
            self._unregistered.add(token)

    def mark_registered(self, token: str) -> None:
        with self._lock:
            self._unregistered.discard(token)

    def is_unregistered(self, token: str) -> bool:
        with self._lock:
            return token in self._unregistered

    def reset(self) -> None:
        with self._lock:
            self._unregistered.clear()

    def routes(self) -> list[Route]:
        return [
            Route("/v1/projects/<project>/messages:send", ("POST",), self._send, "fcm", self._recipients),
            Route("/_fcm/unregistered", ("GET",), self._control_list),
            Route("/_fcm/unregistered", ("POST", "DELETE"), self._control_mark),
        ]

    def _control_list(self, request: Request, args: dict[str, str]) -> Response:
        with self._lock:
            return json_response({"unregistered": sorted(self._unregistered)})

    def _control_mark(self, request: Request, args: dict[str, str]) -> Response:
        token = str(control_json(request, "token")["token"])
        if request.method == "POST":
            self.mark_unregistered(token)
        else:
            self.mark_registered(token)
        return json_response({"token": token, "unregistered": self.is_unregistered(token)})

    def fault_response(self, status: int) -> Response:
        if status == 429:
            return google_error(
                429, "Quota exceeded for quota metric 'Send requests'.", fcm_code="QUOTA_EXCEEDED"
            )
        if status == 503:
            return google_error(503, "The service is currently unavailable.", fcm_code="UNAVAILABLE")
        if status >= 500:
            return google_error(status, "Internal error encountered.", fcm_code="INTERNAL")
        return google_error(status, f"Error {status}")

    @staticmethod
    def _recipients(request: Request, args: dict[str, str]) -> list[str]:
        try:
            message = json.loads(request.get_data(cache=True) or b"{}").get("message") or {}
        except (ValueError, AttributeError):
            return []
        return [str(message[key]) for key in TARGETS if isinstance(message, dict) and key in message]

    def _send(self, request: Request, args: dict[str, str]) -> Response:
        project = args["project"]
        header = request.headers.get("Authorization", "")
        token = self.oauth.lookup(header[7:]) if header.startswith("Bearer ") else None
        if token is None:
            return google_error(
                401,
                "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie "
                "or other valid authentication credential. "
                "See https://developers.google.com/identity/sign-in/web/devconsole-project.",
            )
        if project != token.project_id:
            return google_error(
                403,
                f"Permission 'cloudmessaging.messages.create' denied on resource "
                f"'//cloudresourcemanager.googleapis.com/projects/{project}' (or it may not exist).",
            )
        if not token.scopes & SEND_SCOPES:
            return google_error(403, "Request had insufficient authentication scopes.")
        try:
            payload = json.loads(request.get_data(cache=True))
            if not isinstance(payload, dict):
                raise ValueError
        except ValueError:
            return google_error(400, "Invalid JSON payload received.")
        try:
            message, target, recipient = self._validate(payload)
        except FcmInvalid as invalid:
            details = []
            if invalid.field:
                details.append(
                    {
                        "@type": BAD_REQUEST_TYPE,
                        "fieldViolations": [{"field": invalid.field, "description": invalid.message}],
                    }
                )
            return google_error(400, invalid.message, fcm_code=invalid.fcm_code, details=details)
        if target in DEVICE_TARGETS and self.is_unregistered(recipient):
            return google_error(404, "Requested entity was not found.", fcm_code="UNREGISTERED")
        if payload.get("validate_only"):
            return json_response({"name": f"projects/{project}/messages/fake_message_id"})
        name = f"projects/{project}/messages/0:{time.time_ns() // 1000}%{secrets.token_hex(8)}"
        notification = message.get("notification") or {}
        self.outbox.record(
            provider="fcm",
            channel="push",
            recipient=recipient,
            subject=notification.get("title"),
            body=notification.get("body"),
            provider_id=name,
            request=payload,
            data=message.get("data") or {},
        )
        return json_response({"name": name})

    @staticmethod
    def _validate(payload: dict[str, Any]) -> tuple[dict[str, Any], str, str]:
        """The message, its target kind and the recipient; raises FcmInvalid like FCM's 400s."""
        unknown = set(payload) - {"message", "validate_only"}
        if unknown:
            name = sorted(unknown)[0]
            raise FcmInvalid(
                f'Invalid JSON payload received. Unknown name "{name}": Cannot find field.', name
            )
        message = payload.get("message")
        if not isinstance(message, dict):
            raise FcmInvalid("Request contains an invalid argument.", "message")
        unknown = set(message) - MESSAGE_FIELDS
        if unknown:
            name = sorted(unknown)[0]
            raise FcmInvalid(
                f"Invalid JSON payload received. Unknown name \"{name}\" at 'message': Cannot find field.",
                f"message.{name}",
            )
        targets = [key for key in TARGETS if key in message]
        if len(targets) != 1:
            raise FcmInvalid(
                "Request contains an invalid argument: "
                "exactly one of token, fid, topic or condition is required.",
                "message",
            )
        target = targets[0]
        value = message[target]
        if not isinstance(value, str) or not value:
            raise FcmInvalid(f"Invalid value at 'message.{target}' (TYPE_STRING)", f"message.{target}")
        if target in DEVICE_TARGETS and value.startswith("invalid"):
            raise FcmInvalid(
                "The registration token is not a valid FCM registration token", fcm_code="INVALID_ARGUMENT"
            )
        if target == "topic" and not TOPIC_NAME.match(value):
            raise FcmInvalid("Request contains an invalid argument.", "message.topic", "INVALID_ARGUMENT")
        data = message.get("data")
        if data is not None:
            if not isinstance(data, dict):
                raise FcmInvalid("Invalid value at 'message.data'", "message.data")
            for index, (key, item) in enumerate(data.items()):
                if not isinstance(item, str):
                    text = f"Invalid value at 'message.data[{index}].value' (TYPE_STRING), {json.dumps(item)}"
                    raise FcmInvalid(text, f"message.data[{index}].value")
                if key in {"from", "notification", "message_type"} or key.startswith(("google.", "gcm.")):
                    raise FcmInvalid(f"Invalid data payload key: {key}", "message.data", "INVALID_ARGUMENT")
        notification = message.get("notification")
        if notification is not None and not isinstance(notification, dict):
            raise FcmInvalid("Invalid value at 'message.notification'", "message.notification")
        for key in ("title", "body", "image"):
            if notification and key in notification and not isinstance(notification[key], str):
                raise FcmInvalid(
                    f"Invalid value at 'message.notification.{key}' (TYPE_STRING)",
                    f"message.notification.{key}",
                )
        _validate_android(message.get("android"))
        _validate_apns(message.get("apns"))
        for platform, size in payload_sizes(message).items():
            if size > MAX_PAYLOAD_BYTES:
                raise FcmInvalid(f"{platform} message is too big", None, INVALID_ARGUMENT)
        recipient = value if target in DEVICE_TARGETS else f"{target}:{value}"
        return message, target, recipient


def payload_sizes(message: dict[str, Any]) -> dict[str, int]:
    """What each platform delivers to the device, in bytes of compact JSON: on Android the data and
    the notification's display fields, on iOS the APNs payload (the notification as `aps.alert`,
    the data as custom keys beside `aps`)."""
    data = message.get("data") or {}
    notification = message.get("notification") or {}
    android = (message.get("android") or {}).get("notification") or {}
    payload = dict((message.get("apns") or {}).get("payload") or {})
    aps = dict(payload.get("aps") or {})
    if notification:
        aps["alert"] = {**notification, **(aps.get("alert") if isinstance(aps.get("alert"), dict) else {})}

    def size(value: Any) -> int:
        return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())

    return {
        "Android": size({"data": data, "notification": {**notification, **android}}),
        "APNs": size({**data, **payload, "aps": aps}),
    }


def _validate_android(android: Any) -> None:
    if android is None:
        return
    if not isinstance(android, dict):
        raise FcmInvalid("Invalid value at 'message.android'", "message.android")
    ttl = android.get("ttl")
    if ttl is not None:
        if not isinstance(ttl, str) or not DURATION.match(ttl):
            raise FcmInvalid(
                f"Invalid value at 'message.android.ttl' (type.googleapis.com/google.protobuf.Duration), "
                f"{json.dumps(ttl)}",
                "message.android.ttl",
            )
        if float(ttl[:-1]) > MAX_TTL_SECONDS:
            raise FcmInvalid("Request contains an invalid argument.", "message.android.ttl", INVALID_ARGUMENT)
    priority = android.get("priority")
    if priority is not None and str(priority).upper() not in ("NORMAL", "HIGH"):
        raise FcmInvalid(
            f"Invalid value at 'message.android.priority' (type.googleapis.com/"
            f"google.firebase.fcm.v1.AndroidMessagePriority), {json.dumps(priority)}",
            "message.android.priority",
        )
    count = (android.get("notification") or {}).get("notification_count")
    if count is not None and (not isinstance(count, int) or isinstance(count, bool) or count < 0):
        raise FcmInvalid(
            "Invalid value at 'message.android.notification.notification_count' (TYPE_INT32)",
            "message.android.notification.notification_count",
        )


def _validate_apns(apns: Any) -> None:
    if apns is None:
        return
    if not isinstance(apns, dict):
        raise FcmInvalid("Invalid value at 'message.apns'", "message.apns")
    headers = apns.get("headers") or {}
    if not isinstance(headers, dict) or not all(isinstance(v, str) for v in headers.values()):
        raise FcmInvalid("Invalid value at 'message.apns.headers'", "message.apns.headers")
    if headers.get("apns-priority", "10") not in APNS_PRIORITIES:
        raise FcmInvalid("Request contains an invalid argument.", "message.apns.headers", "INVALID_ARGUMENT")
    if len(headers.get("apns-collapse-id", "").encode()) > MAX_APNS_COLLAPSE_ID_BYTES:
        # APNs answers BadCollapseId; FCM passes it back as an invalid argument
        raise FcmInvalid("Request contains an invalid argument.", "message.apns.headers", "INVALID_ARGUMENT")
    expiration = headers.get("apns-expiration")
    if expiration is not None and not expiration.isdigit():
        raise FcmInvalid("Request contains an invalid argument.", "message.apns.headers", "INVALID_ARGUMENT")
    payload = apns.get("payload")
    if payload is not None and not isinstance((payload or {}).get("aps", {}), dict):
        raise FcmInvalid("Invalid value at 'message.apns.payload'", "message.apns.payload")
