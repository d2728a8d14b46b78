"""The FCM v1 + Google OAuth sandbox driven by the real firebase-admin SDK."""

from __future__ import annotations

import json
import socket
import time
import warnings
from typing import Any

import firebase_admin
import google.auth.exceptions
import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from firebase_admin import credentials as firebase_credentials
from firebase_admin import exceptions, messaging

from herald.channels import fcm
from herald.channels.ports import PushNotification
from local.sandboxes import SandboxHost
from local.sandboxes.fcm import FCM_ERROR_TYPE

pytestmark = [pytest.mark.integration, pytest.mark.filterwarnings("ignore:Message.token is deprecated")]

UNREGISTERED_BODY = {
    "error": {
        "code": 404,
        "message": "Requested entity was not found.",
        "status": "NOT_FOUND",
        "details": [
            {"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode": "UNREGISTERED"}
        ],
    }
}


def test_send_is_accepted_and_recorded(sandbox: SandboxHost, firebase_app: firebase_admin.App) -> None:
    message = messaging.Message(
        token="device-token-1",
        notification=messaging.Notification(title="Order shipped", body="It is on its way"),
        data={"notification_id": "n1"},
    )

    name = messaging.send(message, app=firebase_app)

    assert name.startswith(f"projects/{sandbox.credentials.fcm.project_id}/messages/")
    (entry,) = sandbox.outbox.entries(provider="fcm")
    assert (entry.channel, entry.recipient, entry.subject, entry.body) == (
        "push",
        "device-token-1",
        "Order shipped",
        "It is on its way",
    )
    assert entry.provider_id == name
    assert entry.request["message"]["data"] == {"notification_id": "n1"}


def test_fid_and_topic_targets(sandbox: SandboxHost, firebase_app: firebase_admin.App) -> None:
    messaging.send(messaging.Message(fid="installation-1", data={"a": "b"}), app=firebase_app)
    messaging.send(messaging.Message(topic="news", data={"a": "b"}), app=firebase_app)

    assert [entry.recipient for entry in sandbox.outbox.entries(provider="fcm")] == [
        "installation-1",
        "topic:news",
    ]


def test_dry_run_validates_without_delivering(sandbox: SandboxHost, firebase_app: firebase_admin.App) -> None:
    name = messaging.send(messaging.Message(token="device-token-1"), dry_run=True, app=firebase_app)

    assert name.endswith("/messages/fake_message_id")
    assert sandbox.outbox.entries() == []


def test_unregistered_token_raises_unregistered_error(
    sandbox: SandboxHost, firebase_app: firebase_admin.App
) -> None:
    sandbox.fcm.mark_unregistered("dead-token")

    with pytest.raises(messaging.UnregisteredError) as raised:
        messaging.send(messaging.Message(token="dead-token", data={"a": "b"}), app=firebase_app)

    assert raised.value.http_response.status_code == 404
    assert raised.value.http_response.json() == UNREGISTERED_BODY
    assert sandbox.outbox.entries() == []


def test_invalid_token_raises_invalid_argument(
    sandbox: SandboxHost, firebase_app: firebase_admin.App
) -> None:
    with pytest.raises(exceptions.InvalidArgumentError) as raised:
        messaging.send(messaging.Message(token="invalid-token"), app=firebase_app)

    error = raised.value.http_response.json()["error"]
    assert error["status"] == "INVALID_ARGUMENT"
    assert error["details"][0]["errorCode"] == "INVALID_ARGUMENT"
    assert sandbox.outbox.entries() == []


def test_multicast_reports_each_token(sandbox: SandboxHost, firebase_app: firebase_admin.App) -> None:
    sandbox.fcm.mark_unregistered("gone")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        multicast = messaging.MulticastMessage(tokens=["t1", "gone", "t3"], data={"k": "v"})

    batch = messaging.send_each_for_multicast(multicast, app=firebase_app)

    assert (batch.success_count, batch.failure_count) == (2, 1)
    assert isinstance(batch.responses[1].exception, messaging.UnregisteredError)
    assert sorted(entry.recipient for entry in sandbox.outbox.entries()) == ["t1", "t3"]


def _bearer(sandbox: SandboxHost) -> dict[str, str]:
    return {"Authorization": f"Bearer {sandbox.oauth.issue().token}"}


def test_wrong_bearer_gets_googles_401(sandbox: SandboxHost, fcm_url: str) -> None:
    body = {"message": {"token": "device-token-1", "data": {"a": "b"}}}

    response = requests.post(fcm_url, json=body, headers={"Authorization": "Bearer ya29.not-issued-here"})
    missing = requests.post(fcm_url, json=body)

    assert response.status_code == 401
    assert response.json()["error"]["status"] == "UNAUTHENTICATED"
    assert response.json()["error"]["code"] == 401
    assert missing.status_code == 401
    assert sandbox.outbox.entries() == []
    assert requests.post(fcm_url, json=body, headers=_bearer(sandbox)).status_code == 200


def test_non_string_data_and_ambiguous_targets_are_invalid(sandbox: SandboxHost, fcm_url: str) -> None:
    non_string = requests.post(
        fcm_url, json={"message": {"token": "t", "data": {"count": 3}}}, headers=_bearer(sandbox)
    )
    two_targets = requests.post(
        fcm_url, json={"message": {"token": "t", "topic": "news"}}, headers=_bearer(sandbox)
    )
    no_target = requests.post(fcm_url, json={"message": {"data": {"a": "b"}}}, headers=_bearer(sandbox))

    for response in (non_string, two_targets, no_target):
        assert response.status_code == 400, response.text
        assert response.json()["error"]["status"] == "INVALID_ARGUMENT"
    violation = non_string.json()["error"]["details"][0]["fieldViolations"][0]
    assert violation["field"] == "message.data[0].value"
    assert sandbox.outbox.entries() == []


def test_other_project_is_permission_denied(sandbox: SandboxHost) -> None:
    url = f"{sandbox.url}/v1/projects/someone-elses/messages:send"
    response = requests.post(url, json={"message": {"token": "t"}}, headers=_bearer(sandbox))
    assert response.status_code == 403
    assert response.json()["error"]["status"] == "PERMISSION_DENIED"


def test_a_fresh_app_only_resolves_loopback_hosts(
    sandbox: SandboxHost, fcm_url: str, google_offline: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """OAuth grant + send from a new app touch no other host (google-auth's background
    Regional Access Boundary lookup at iamcredentials.googleapis.com is switched off)."""
    resolved: list[str] = []
    real_getaddrinfo = socket.getaddrinfo

    def recording_getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        resolved.append(str(host))
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", recording_getaddrinfo)
    cert = firebase_credentials.Certificate(dict(sandbox.credentials.fcm.service_account))
    app = firebase_admin.initialize_app(cert, name="loopback-only")
    try:
        messaging.send(messaging.Message(token="device-token-1"), app=app)
        time.sleep(0.3)  # the lookup would run in a background thread
    finally:
        firebase_admin.delete_app(app)

    assert resolved, "expected the OAuth and FCM calls to resolve 127.0.0.1"
    assert set(resolved) == {"127.0.0.1"}


def test_token_endpoint_rejects_a_foreign_service_account_key(
    sandbox: SandboxHost, fcm_url: str, google_offline: None
) -> None:
    """A service account whose private key the sandbox does not know fails the OAuth grant."""
    foreign = dict(sandbox.credentials.fcm.service_account)
    foreign["private_key"] = (
        rsa.generate_private_key(public_exponent=65537, key_size=2048)
        .private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        .decode()
    )
    app = firebase_admin.initialize_app(firebase_credentials.Certificate(foreign), name="foreign-key")
    try:
        with pytest.raises(google.auth.exceptions.RefreshError, match="Invalid JWT Signature"):
            messaging.send(messaging.Message(token="device-token-1"), app=app)
    finally:
        firebase_admin.delete_app(app)
    assert sandbox.outbox.entries() == []


def test_token_endpoint_grant_types(sandbox: SandboxHost) -> None:
    token_uri = sandbox.credentials.fcm.token_uri
    assert token_uri == f"{sandbox.url}/token"

    wrong_grant = requests.post(token_uri, data={"grant_type": "client_credentials"})
    garbage = requests.post(
        token_uri, data={"grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer", "assertion": "x.y.z"}
    )

    assert wrong_grant.status_code == 400
    assert wrong_grant.json()["error"] == "unsupported_grant_type"
    assert garbage.status_code == 400
    assert json.loads(garbage.text)["error"] == "invalid_request"


def test_quota_fault_maps_to_quota_exceeded(sandbox: SandboxHost, firebase_app: firebase_admin.App) -> None:
    sandbox.faults.add("fcm", status=429, count=1)

    with pytest.raises(messaging.QuotaExceededError) as raised:
        messaging.send(messaging.Message(token="device-token-1"), app=firebase_app)

    assert "Retry-After" not in raised.value.http_response.headers

    assert sandbox.outbox.entries() == []
    messaging.send(messaging.Message(token="device-token-1"), app=firebase_app)
    assert len(sandbox.outbox.entries()) == 1


def test_sdk_retries_503_and_429_with_retry_after_by_itself(
    sandbox: SandboxHost, firebase_app: firebase_admin.App
) -> None:
    """firebase-admin's urllib3 Retry absorbs 500/503 (status_forcelist) and any 429/503 that
    carries Retry-After, up to 4 retries: Herald's push sender never sees those transients."""
    unavailable = sandbox.faults.add("fcm", status=503, count=2)
    throttled = sandbox.faults.add("fcm", status=429, count=2, retry_after=0, match="device-token-2")

    messaging.send(messaging.Message(token="device-token-1"), app=firebase_app)
    messaging.send(messaging.Message(token="device-token-2"), app=firebase_app)

    assert (unavailable.hits, throttled.hits) == (2, 2)
    assert [entry.recipient for entry in sandbox.outbox.entries()] == ["device-token-1", "device-token-2"]


# -- what FCM checks of a message's size and presentation (issue 12 item 5) ---------------------


def test_a_message_over_four_kilobytes_is_refused_as_fcm_refuses_it(
    sandbox: SandboxHost, firebase_app: firebase_admin.App
) -> None:
    too_big = messaging.Message(token="device-token-1", data={"blob": "x" * 4100})

    with pytest.raises(exceptions.InvalidArgumentError, match="Android message is too big") as raised:
        messaging.send(too_big, app=firebase_app)

    body = raised.value.http_response.json()["error"]  # type: ignore[union-attr]
    assert (body["code"], body["status"]) == (400, "INVALID_ARGUMENT")
    assert {"@type": FCM_ERROR_TYPE, "errorCode": "INVALID_ARGUMENT"} in body["details"]
    assert sandbox.outbox.entries() == []


def test_herald_measures_the_payload_as_the_sandbox_does(
    sandbox: SandboxHost, firebase_app: firebase_admin.App
) -> None:
    base = PushNotification(
        title="Ana replied",
        body="",
        data={"notification_id": "n-1"},
        android_channel="social",
        android_priority="normal",
        apns_priority=5,
        collapse_key="n-1",
        badge="increment",
        apns_category="REPLY",
    )
    empty = fcm.payload_bytes(messaging._MessagingService.encode_message(fcm.build_message(base, "t")))
    at_the_limit = PushNotification(**{**base.__dict__, "body": "é" * ((fcm.MAX_PAYLOAD_BYTES - empty) // 2)})
    over = PushNotification(**{**at_the_limit.__dict__, "body": at_the_limit.body + "éé"})

    assert fcm.refusal(at_the_limit) is None
    messaging.send(fcm.build_message(at_the_limit, "device-token-1"), app=firebase_app)
    assert fcm.refusal(over) is not None
    with pytest.raises(exceptions.InvalidArgumentError, match="too big"):
        messaging.send(fcm.build_message(over, "device-token-1"), app=firebase_app)
    assert len(sandbox.outbox.entries()) == 1


@pytest.mark.parametrize(
    ("android", "apns", "field"),
    [
        ({"ttl": "ten minutes"}, None, "message.android.ttl"),
        ({"ttl": "2419201s"}, None, "message.android.ttl"),
        ({"priority": "urgent"}, None, "message.android.priority"),
        (
            {"notification": {"notification_count": "one"}},
            None,
            "message.android.notification.notification_count",
        ),
        (None, {"headers": {"apns-collapse-id": "k" * 65}}, "message.apns.headers"),
        (None, {"headers": {"apns-priority": "7"}}, "message.apns.headers"),
        (None, {"headers": {"apns-expiration": "tomorrow"}}, "message.apns.headers"),
        (None, {"headers": {"apns-priority": 10}}, "message.apns.headers"),
    ],
)
def test_platform_options_are_checked_as_fcm_checks_them(
    sandbox: SandboxHost, fcm_url: str, android: Any, apns: Any, field: str
) -> None:
    message: dict[str, Any] = {"token": "device-token-1", "notification": {"title": "t"}}
    if android is not None:
        message["android"] = android
    if apns is not None:
        message["apns"] = apns

    response = requests.post(fcm_url, json={"message": message}, headers=_bearer(sandbox))

    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["status"] == "INVALID_ARGUMENT"
    violations = [v for d in error.get("details", []) for v in d.get("fieldViolations", [])]
    assert [v["field"] for v in violations] == [field]
    assert sandbox.outbox.entries() == []


def test_a_herald_push_with_every_presentation_field_is_accepted(
    sandbox: SandboxHost, firebase_app: firebase_admin.App
) -> None:
    push = PushNotification(
        title="Your driver is here",
        body="Rui is waiting",
        data={"notification_id": "n-1", "badge": "increment"},
        android_channel="rides",
        android_priority="high",
        apns_priority=10,
        collapse_key="ride-AA-12-BB",
        sound="driver_arrived.caf",
        badge="increment",
        interruption_level="time-sensitive",
        apns_category="RIDE",
        ttl_seconds=300,
    )
    silent = PushNotification(**{**push.__dict__, "data_only": True, "sound": None, "apns_category": None})

    for each in (push, silent):
        messaging.send(fcm.build_message(each, "device-token-1"), app=firebase_app)

    visible, data_only = (e.request["message"] for e in sandbox.outbox.entries(provider="fcm"))
    assert visible["android"]["ttl"] == "300s"
    assert visible["android"]["notification"]["sound"] == "driver_arrived"
    assert visible["apns"]["payload"]["aps"]["interruption-level"] == "time-sensitive"
    assert visible["apns"]["headers"]["apns-collapse-id"] == "ride-AA-12-BB"
    assert "notification" not in data_only
    assert data_only["apns"]["payload"]["aps"] == {"content-available": 1}
