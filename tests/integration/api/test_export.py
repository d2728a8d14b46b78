"""`GET /v1/me/export`: everything Herald holds about the caller, and nothing about anyone else."""

from __future__ import annotations

from datetime import timedelta

import pytest

from herald.directory import Directory, UserUpserted
from herald.stores.keys import email_address
from herald.stores.suppression import SuppressionStore
from tests.integration.api.conftest import T0, seed_notification
from tests.support.api import ApiClient
from tests.support.stack import MotoStack

pytestmark = pytest.mark.integration

TOKEN = "fcm-token-" + "a" * 140


def a_person_herald_knows_well(api: ApiClient, stack: MotoStack, user_id: str = "u1") -> list[str]:
    """Synced by the directory, with own settings, a consent, a device, notifications (one read),
    a read-all mark, a presence item and a bounced email. Returns the notification ids."""
    client = stack.client("dynamodb")
    Directory(client, stack.tables["UsersTable"]).apply(
        UserUpserted(user_id=user_id, version=3, email=f"{user_id}@example.com", roles=frozenset({"admin"}))
    )
    assert api.put("/v1/me/preferences", user=user_id, json={"time_zone": "Europe/Lisbon"}).status == 200
    consent = {"phone": "+14155552671", "sms_marketing": {"granted": True, "wording_version": "v7"}}
    assert api.put("/v1/me/contacts", user=user_id, json=consent).status == 200
    assert api.put(f"/v1/me/devices/{TOKEN}", user=user_id, json={"platform": "ios"}).status == 200
    ids = [
        seed_notification(stack, user_id, f"ord-{i}", created_at=T0 + timedelta(seconds=i)) for i in range(3)
    ]
    client.update_item(
        TableName=stack.tables["NotificationsTable"],
        Key={"user_id": {"S": user_id}, "notification_id": {"S": ids[0]}},
        UpdateExpression="SET task_token = :t, delivery_log = :log",
        ExpressionAttributeValues={
            ":t": {"S": "AQB-task-token"},
            ":log": {"L": [{"M": {"channel": {"S": "push"}, "outcome": {"S": "sent"}}}]},
        },
    )
    assert api.post(f"/v1/me/notifications/{ids[1]}/read", user=user_id).status == 200
    assert api.post("/v1/me/notifications/read-all", user=user_id).status == 200
    client.put_item(
        TableName=stack.tables["PresenceTable"],
        Item={"user_id": {"S": user_id}, "occupied": {"BOOL": True}, "time_ms": {"N": "1"}},
    )
    SuppressionStore(client, stack.tables["SuppressionTable"]).suppress(
        email_address(f"{user_id}@example.com"), "bounce", "ses", contact=f"{user_id}@example.com"
    )
    return ids


def test_the_export_holds_everything_herald_knows_about_the_caller(api: ApiClient, stack: MotoStack) -> None:
    ids = a_person_herald_knows_well(api, stack)

    answer = api.get("/v1/me/export")

    assert answer.status == 200
    data = answer.json
    assert data["user_id"] == "u1"
    profile = data["profile"]
    assert (profile["email"], profile["phone"], profile["time_zone"]) == (
        "u1@example.com",
        "+14155552671",
        "Europe/Lisbon",
    )
    assert list(profile["devices"]) == [TOKEN]
    assert data["own_settings"]["time_zone"] == "Europe/Lisbon"
    assert data["roles"] == ["admin"]
    assert data["directory"]["version"] == 3
    assert [(c["granted"], c["wording_version"], c["phone"]) for c in data["consents"]] == [
        (True, "v7", "+14155552671")
    ]
    assert data["inbox"]["read_all_at"]
    assert [n["notification_id"] for n in data["notifications"]] == ids
    assert data["notifications"][0]["delivery_log"] == [{"channel": "push", "outcome": "sent"}]
    assert all("task_token" not in n for n in data["notifications"])
    assert data["notifications"][1]["read_at"]
    assert data["presence"]["occupied"] is True
    assert [(s["channel"], s["contact"], s["reason"]) for s in data["suppressions"]] == [
        ("email", "u1@example.com", "bounce")
    ]


def test_another_persons_export_holds_nothing_of_the_caller(api: ApiClient, stack: MotoStack) -> None:
    a_person_herald_knows_well(api, stack, "u1")

    data = api.get("/v1/me/export", user="u2").json

    assert data["user_id"] == "u2"
    assert data["profile"] is None and data["notifications"] == [] and data["consents"] == []
    assert data["suppressions"] == [] and data["presence"] is None and data["roles"] == []
    assert "u1" not in answer_text(api, "u2")


def answer_text(api: ApiClient, user: str) -> str:
    return api.get("/v1/me/export", user=user).body.decode()


def test_the_export_refuses_a_missing_or_bad_token(api: ApiClient) -> None:
    for token in (None, api.issuer.token("u1", ttl=-60), "x.y.z"):
        assert api.request("GET", "/v1/me/export", user=None, token=token).status == 401
    assert api.events == []


def test_the_export_holds_the_directorys_values_under_the_persons_own(
    api: ApiClient, stack: MotoStack
) -> None:
    """GIVEN the directory's email bounced and the person set another one THEN the export shows both
    addresses and the suppression of the directory's one."""
    client = stack.client("dynamodb")
    Directory(client, stack.tables["UsersTable"]).apply(
        UserUpserted(user_id="u1", version=1, email="old@example.com")
    )
    SuppressionStore(client, stack.tables["SuppressionTable"]).suppress(
        email_address("old@example.com"), "bounce", "ses", contact="old@example.com"
    )
    assert api.put("/v1/me/contacts", json={"email": "new@example.com"}).status == 200

    data = api.get("/v1/me/export").json

    assert data["profile"]["email"] == "new@example.com"
    assert data["directory_profile"]["email"] == "old@example.com"
    assert [(s["contact"], s["reason"]) for s in data["suppressions"]] == [("old@example.com", "bounce")]
