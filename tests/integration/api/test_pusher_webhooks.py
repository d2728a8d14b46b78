"""`POST /v1/webhooks/pusher`: Pusher's signed occupancy webhooks, as the Pusher sandbox signs them,
through the template's route (no JWT) into the API function, on moto."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import types
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from herald.settings import ApiSettings, load
from herald.stores.dynamo import batch_get, from_attributes
from herald.stores.presence import presence_from_item, presence_key
from local.sandboxes import pusher_channels
from local.sandboxes.outbox import Outbox
from local.sandboxes.pusher_channels import PusherSandbox
from tests.support.api import Answer, ApiClient, api_credentials
from tests.support.stack import MotoStack

pytestmark = pytest.mark.integration

PATH = "/v1/webhooks/pusher"
STALE_SECONDS = 301  # Pusher's (and the SDK's) bound is 300 s either way


@pytest.fixture
def pusher() -> PusherSandbox:
    """The Pusher sandbox with the credentials the stack's Pusher secret holds (it signs webhooks)."""
    return PusherSandbox(api_credentials().pusher, Outbox())


def occupied(user_id: str) -> dict[str, str]:
    return {"name": "channel_occupied", "channel": f"private-user-{user_id}"}


def vacated(user_id: str) -> dict[str, str]:
    return {"name": "channel_vacated", "channel": f"private-user-{user_id}"}


def deliver(api: ApiClient, body: bytes, headers: dict[str, str]) -> Answer:
    return api.post(PATH, user=None, data=body, headers=headers)


def signed(pusher: PusherSandbox, *events: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
    body, headers = pusher.webhook_request(list(events))
    time.sleep(0.002)  # the next webhook gets a later time_ms
    return body, headers


def presence_items(stack: MotoStack) -> list[dict[str, Any]]:
    table = stack.tables["PresenceTable"]
    items = stack.client("dynamodb").scan(TableName=table, ConsistentRead=True)["Items"]
    return sorted((from_attributes(item) for item in items), key=lambda item: item["user_id"])


def state(stack: MotoStack, user_id: str) -> bool | None:
    found = {item["user_id"]: item["occupied"] for item in presence_items(stack)}
    return found.get(user_id)


def assert_refused(answer: Answer) -> None:
    assert answer.status == 401, answer.body
    assert answer.json["error"]["code"] == "unauthorized"


@pytest.fixture
def seeded(stack: MotoStack, api: ApiClient, pusher: PusherSandbox) -> Iterator[list[dict[str, Any]]]:
    """u1 online and u2 offline, applied by webhooks; yields the table as it then is."""
    assert deliver(api, *signed(pusher, occupied("u1"), occupied("u2"))).status == 200
    assert deliver(api, *signed(pusher, vacated("u2"))).status == 200
    yield presence_items(stack)


# -- applied ------------------------------------------------------------------------------


def test_an_occupied_webhook_makes_the_user_online_for_the_router(
    stack: MotoStack, api: ApiClient, pusher: PusherSandbox
) -> None:
    # GIVEN a channel_occupied webhook signed as Pusher signs it, sent without any JWT
    body, headers = signed(pusher, occupied("u1"))
    # WHEN Pusher delivers it
    answer = deliver(api, body, headers)
    # THEN it is applied, and the router's read of the presence table sees u1 online
    assert answer.status == 200, answer.body
    assert answer.json == {"applied": 1, "stale": 0, "ignored": 0}
    settings = load(ApiSettings)
    table = stack.tables["PresenceTable"]
    (item,) = batch_get(stack.client("dynamodb"), {table: [presence_key("u1")]})[table]
    presence = presence_from_item(item)
    assert presence.occupied
    assert presence.expires_at == presence.time_ms // 1000 + settings.presence_max_age_seconds
    assert presence.online_at(datetime.now(UTC), settings.presence_max_age_seconds)


def test_a_base64_encoded_body_is_verified_on_its_raw_bytes(
    stack: MotoStack, api: ApiClient, pusher: PusherSandbox
) -> None:
    # GIVEN a body API Gateway hands over base64-encoded (a content type it does not treat as text)
    body, headers = signed(pusher, occupied("u1"))
    headers["Content-Type"] = "application/octet-stream"
    # WHEN it is delivered THEN the signature holds on the decoded bytes
    answer = deliver(api, body, headers)
    assert answer.status == 200, answer.body
    assert state(stack, "u1") is True


def test_every_event_of_a_batched_body_is_applied(
    stack: MotoStack, api: ApiClient, pusher: PusherSandbox
) -> None:
    # GIVEN u3 online before the batch
    assert deliver(api, *signed(pusher, occupied("u3"))).status == 200
    # WHEN one body occupies u1 and u2, vacates u3, and reports a presence member and another channel
    body, headers = signed(
        pusher,
        occupied("u1"),
        occupied("u2"),
        vacated("u3"),
        {"name": "member_added", "channel": "presence-user-u4", "user_id": "u4"},
        {"name": "channel_occupied", "channel": "private-orders"},
    )
    answer = deliver(api, body, headers)
    # THEN every occupancy change is applied and the others are counted as ignored
    assert answer.status == 200, answer.body
    assert answer.json == {"applied": 3, "stale": 0, "ignored": 2}
    assert [(item["user_id"], item["occupied"]) for item in presence_items(stack)] == [
        ("u1", True),
        ("u2", True),
        ("u3", False),
    ]


def test_a_replayed_webhook_changes_nothing(
    stack: MotoStack, api: ApiClient, pusher: PusherSandbox, seeded: list[dict[str, Any]]
) -> None:
    # GIVEN u1's occupied webhook, applied, then u1 vacated by a later one
    body, headers = signed(pusher, occupied("u1"))
    assert deliver(api, body, headers).json["applied"] == 1
    assert deliver(api, *signed(pusher, vacated("u1"))).status == 200
    before = presence_items(stack)
    # WHEN the occupied webhook is delivered again (Pusher's retry, or an attacker's replay)
    answer = deliver(api, body, headers)
    # THEN it is acknowledged and changes nothing
    assert answer.status == 200
    assert answer.json == {"applied": 0, "stale": 1, "ignored": 0}
    assert presence_items(stack) == before
    assert state(stack, "u1") is False


def test_out_of_order_delivery_ends_in_the_newest_state(
    stack: MotoStack, api: ApiClient, pusher: PusherSandbox
) -> None:
    # GIVEN u1 occupied at t1 and vacated at t2 > t1
    occupied_at_t1 = signed(pusher, occupied("u1"))
    vacated_at_t2 = signed(pusher, vacated("u1"))
    # WHEN Pusher delivers the vacated one first
    assert deliver(api, *vacated_at_t2).json == {"applied": 1, "stale": 0, "ignored": 0}
    assert deliver(api, *occupied_at_t1).json == {"applied": 0, "stale": 1, "ignored": 0}
    # THEN u1 ends vacated
    assert state(stack, "u1") is False


# -- refused: 401 and nothing written -----------------------------------------------------


def test_a_forged_signature_is_refused(
    stack: MotoStack, api: ApiClient, pusher: PusherSandbox, seeded: list[dict[str, Any]]
) -> None:
    body, headers = signed(pusher, vacated("u1"))
    # signed as Pusher signs, but under another secret
    forged_signature = hmac.new(b"not-the-secret", body, hashlib.sha256).hexdigest()
    forged = dict(headers, **{"X-Pusher-Signature": forged_signature})
    assert_refused(deliver(api, body, forged))
    assert presence_items(stack) == seeded


def test_a_body_changed_after_signing_is_refused(
    stack: MotoStack, api: ApiClient, pusher: PusherSandbox, seeded: list[dict[str, Any]]
) -> None:
    body, headers = signed(pusher, occupied("u2"))
    tampered = body.replace(b"private-user-u2", b"private-user-u9")
    assert_refused(deliver(api, tampered, headers))
    assert presence_items(stack) == seeded


def test_another_apps_key_is_refused(
    stack: MotoStack, api: ApiClient, pusher: PusherSandbox, seeded: list[dict[str, Any]]
) -> None:
    body, headers = signed(pusher, vacated("u1"))
    assert_refused(deliver(api, body, dict(headers, **{"X-Pusher-Key": "another-app-key"})))
    assert presence_items(stack) == seeded


@pytest.mark.parametrize("skew", [-STALE_SECONDS, STALE_SECONDS])
def test_a_time_ms_more_than_5_minutes_from_now_is_refused(
    stack: MotoStack,
    api: ApiClient,
    pusher: PusherSandbox,
    seeded: list[dict[str, Any]],
    monkeypatch: pytest.MonkeyPatch,
    skew: int,
) -> None:
    # GIVEN a webhook correctly signed, but stamped 301 s in the past (or the future)
    real = time.time
    monkeypatch.setattr(pusher_channels, "time", types.SimpleNamespace(time=lambda: real() + skew))
    body, headers = pusher.webhook_request([vacated("u1")])
    # THEN it is refused and u1 stays online
    assert_refused(deliver(api, body, headers))
    assert presence_items(stack) == seeded


@pytest.mark.parametrize("missing", ["X-Pusher-Key", "X-Pusher-Signature", "both"])
def test_an_unsigned_webhook_is_refused(
    stack: MotoStack, api: ApiClient, pusher: PusherSandbox, seeded: list[dict[str, Any]], missing: str
) -> None:
    body, headers = signed(pusher, vacated("u1"))
    dropped = ("X-Pusher-Key", "X-Pusher-Signature") if missing == "both" else (missing,)
    assert_refused(deliver(api, body, {k: v for k, v in headers.items() if k not in dropped}))
    assert presence_items(stack) == seeded


def test_an_unreadable_pusher_secret_is_503_not_401(
    stack: MotoStack, api: ApiClient, pusher: PusherSandbox
) -> None:
    # GIVEN the Pusher secret is gone
    stack.client("secretsmanager").delete_secret(
        SecretId=stack.secrets["PusherSecret"], ForceDeleteWithoutRecovery=True
    )
    # WHEN a correctly signed webhook arrives
    answer = deliver(api, *signed(pusher, occupied("u1")))
    # THEN Herald cannot verify it now: 503 (Pusher retries), nothing written
    assert answer.status == 503, answer.body
    assert answer.json["error"]["code"] == "unavailable"
    assert presence_items(stack) == []


def test_a_signed_body_of_another_shape_is_422_and_writes_nothing(
    stack: MotoStack, api: ApiClient, pusher: PusherSandbox
) -> None:
    # GIVEN a body signed with the app's secret whose events are not a list
    body = json.dumps({"time_ms": int(time.time() * 1000), "events": "channel_occupied"}).encode()
    signature = hmac.new(pusher.credentials.secret.encode(), body, hashlib.sha256).hexdigest()
    headers = {"Content-Type": "application/json", "X-Pusher-Key": pusher.credentials.key}
    # WHEN it is delivered THEN it is verified but refused as unprocessable, nothing written
    answer = deliver(api, body, dict(headers, **{"X-Pusher-Signature": signature}))
    assert answer.status == 422, answer.body
    assert answer.json["error"]["code"] == "validation_error"
    assert presence_items(stack) == []
