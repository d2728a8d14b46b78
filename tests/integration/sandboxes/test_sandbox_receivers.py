"""Webhook receivers: Herald's `X-Herald-Signature`, timestamp window and Idempotency-Key."""

from __future__ import annotations

import hashlib
import hmac
import json
import time

import pytest
import requests

from local.sandboxes import SandboxHost

pytestmark = pytest.mark.integration

BODY = json.dumps({"type": "invoice.overdue", "notification_id": "n1", "user_id": "u1"}).encode()


def _headers(
    secret: str, body: bytes, key: str | None = "key-1", timestamp: int | None = None
) -> dict[str, str]:
    """Signed as Herald's webhook sender signs (written out here, independent of the sandbox)."""
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    digest = hmac.new(secret.encode(), f"{stamp}.".encode() + body, hashlib.sha256).hexdigest()
    headers = {
        "Content-Type": "application/json",
        "X-Herald-Timestamp": stamp,
        "X-Herald-Signature": f"v1={digest}",
    }
    if key is not None:
        headers["Idempotency-Key"] = key
    return headers


def _url(sandbox: SandboxHost, name: str = "default") -> str:
    return f"{sandbox.url}/receivers/{name}"


def test_signed_request_is_accepted_and_recorded(sandbox: SandboxHost) -> None:
    secret = sandbox.credentials.receivers["default"]

    response = requests.post(_url(sandbox), data=BODY, headers=_headers(secret, BODY))

    assert response.status_code == 200
    assert response.json()["status"] == "accepted"
    (entry,) = sandbox.outbox.entries(provider="webhook")
    assert (entry.channel, entry.recipient, entry.subject, entry.provider_id) == (
        "webhook",
        "default",
        "invoice.overdue",
        "key-1",
    )
    assert entry.request["notification_id"] == "n1"


@pytest.mark.parametrize(
    "case",
    ["wrong-secret", "other-receivers-secret", "stale", "future", "missing-signature", "body-changed"],
)
def test_forged_or_stale_requests_are_401_and_not_recorded(sandbox: SandboxHost, case: str) -> None:
    secret = sandbox.credentials.receivers["default"]
    body = BODY
    if case == "wrong-secret":
        headers = _headers("whsec_guess", body)
    elif case == "other-receivers-secret":
        headers = _headers(sandbox.credentials.receivers["billing"], body)
    elif case == "stale":
        headers = _headers(secret, body, timestamp=int(time.time()) - 301)
    elif case == "future":
        headers = _headers(secret, body, timestamp=int(time.time()) + 301)
    elif case == "missing-signature":
        headers = {"Content-Type": "application/json", "Idempotency-Key": "k"}
    else:
        headers = _headers(secret, body)
        body = body.replace(b"u1", b"u2")

    response = requests.post(_url(sandbox), data=body, headers=headers)

    assert response.status_code == 401, response.text
    assert sandbox.outbox.entries() == []
    assert sandbox.receivers.stats()["default"]["rejected"] == 1


def test_idempotency_key_is_required(sandbox: SandboxHost) -> None:
    secret = sandbox.credentials.receivers["default"]
    response = requests.post(_url(sandbox), data=BODY, headers=_headers(secret, BODY, key=None))
    assert response.status_code == 400
    assert sandbox.outbox.entries() == []


def test_repeated_idempotency_key_is_deduplicated(sandbox: SandboxHost) -> None:
    secret = sandbox.credentials.receivers["billing"]

    first = requests.post(_url(sandbox, "billing"), data=BODY, headers=_headers(secret, BODY, key="same"))
    second = requests.post(_url(sandbox, "billing"), data=BODY, headers=_headers(secret, BODY, key="same"))
    other = requests.post(_url(sandbox, "billing"), data=BODY, headers=_headers(secret, BODY, key="other"))

    assert [first.status_code, second.status_code, other.status_code] == [200, 200, 200]
    assert second.json()["status"] == "duplicate"
    assert [entry.provider_id for entry in sandbox.outbox.entries()] == ["same", "other"]
    assert sandbox.receivers.duplicates("billing") == 1
    assert requests.get(f"{sandbox.url}/_receivers").json()["receivers"]["billing"] == {
        "accepted": 2,
        "duplicates": 1,
        "rejected": 0,
    }


def test_unknown_receiver_is_404_and_receivers_can_be_added(sandbox: SandboxHost) -> None:
    assert requests.post(_url(sandbox, "nobody"), data=BODY).status_code == 404

    created = requests.post(f"{sandbox.url}/_receivers", json={"name": "crm"}).json()

    assert created["url"] == _url(sandbox, "crm")
    response = requests.post(created["url"], data=BODY, headers=_headers(created["secret"], BODY))
    assert response.status_code == 200
    assert sandbox.outbox.entries()[0].recipient == "crm"


def test_a_failing_receiver_fails_twice_then_accepts(sandbox: SandboxHost) -> None:
    secret = sandbox.credentials.receivers["default"]
    requests.post(
        f"{sandbox.url}/_faults", json={"provider": "webhook", "status": 500, "count": 2, "match": "default"}
    )

    statuses = [
        requests.post(_url(sandbox), data=BODY, headers=_headers(secret, BODY, key="retry-me")).status_code
        for _ in range(3)
    ]

    assert statuses == [500, 500, 200]
    assert len(sandbox.outbox.entries()) == 1
    assert sandbox.receivers.duplicates("default") == 0  # the failed attempts were never seen
