"""The app API on the local stack, over real HTTP with tokens from the local issuer: every route,
as an app uses it, with the notifications the pipeline delivers; and no route without a token."""

from __future__ import annotations

import pytest

from local.app_client import AppClient
from local.stack import LocalStack
from tests.e2e.conftest import outbox, put_bus_event, put_event, wait_until

pytestmark = pytest.mark.e2e

SHIPPED = {
    "order_id": "e2e-1",
    "carrier": "DHL",
    "tracking_url": "https://example.com/t/e2e-1",
    "address": "1 Rua Augusta",
}
TOKEN = "e2e-app-phone-" + "x" * 120

EVERY_ROUTE = [
    ("GET", "/v1/me/notifications"),
    ("GET", "/v1/me/notifications/count"),
    ("POST", "/v1/me/notifications/read-all"),
    ("POST", f"/v1/me/notifications/ntf-{'0' * 32}/read"),
    ("POST", f"/v1/me/notifications/ntf-{'0' * 32}/seen"),
    ("POST", f"/v1/me/notifications/ntf-{'0' * 32}/archive"),
    ("GET", "/v1/me/preferences"),
    ("PUT", "/v1/me/preferences"),
    ("PUT", "/v1/me/contacts"),
    ("PUT", f"/v1/me/devices/{TOKEN}"),
    ("DELETE", f"/v1/me/devices/{TOKEN}"),
    ("GET", "/v1/me/export"),
    ("DELETE", "/v1/me"),
]


@pytest.fixture(scope="module")
def app(stack: LocalStack) -> AppClient:
    assert stack.api and stack.sandbox
    return AppClient(stack.api.url, stack.sandbox.url)


def test_an_app_manages_its_persons_devices_preferences_contacts_and_inbox(
    stack: LocalStack, app: AppClient
) -> None:
    # GIVEN the backend synced a person, and their app registered a phone and set contacts
    put_bus_event(stack, "UserUpserted", {"user_id": "app-1", "version": 1, "email": "app-1@example.com"})
    assert app.put(f"/v1/me/devices/{TOKEN}", user="app-1", json_body={"platform": "android"}).status == 200
    contacts = {"phone": "+1 415 555 0171", "sms_marketing": {"granted": True, "wording_version": "sms-v3"}}
    answer = app.put("/v1/me/contacts", user="app-1", json_body=contacts)
    assert answer.status == 200 and answer.body["phone"] == "+14155550171"
    assert wait_until(
        lambda: (app.get("/v1/me/export", user="app-1").body.get("directory") or {}).get("version")
    )

    # WHEN a medium notification is produced THEN it reaches the registered phone and the inbox
    put_event(stack, {"event_id": "e2e-app-1", "type": "order_shipped", "user_id": "app-1", "data": SHIPPED})
    assert wait_until(lambda: outbox(stack, provider="fcm", recipient=TOKEN))
    items = wait_until(lambda: app.get("/v1/me/notifications", user="app-1").body["items"])
    assert [item["data"]["order_id"] for item in items] == ["e2e-1"]
    assert "e2e-1" in items[0]["render"]["title"] + items[0]["render"]["body"]
    nid = items[0]["id"]
    assert app.get("/v1/me/notifications/count", user="app-1").body == {"unread": 1, "unseen": 1}

    # the inbox states, each idempotent
    assert app.post(f"/v1/me/notifications/{nid}/seen", user="app-1").body["seen_at"]
    assert app.get("/v1/me/notifications/count", user="app-1").body == {"unread": 1, "unseen": 0}
    read = app.post(f"/v1/me/notifications/{nid}/read", user="app-1").body
    assert app.post(f"/v1/me/notifications/{nid}/read", user="app-1").body["read_at"] == read["read_at"]
    assert app.get("/v1/me/notifications/count", user="app-1").body == {"unread": 0, "unseen": 0}
    assert app.post(f"/v1/me/notifications/{nid}/archive", user="app-1").body["archived_at"]
    assert app.get("/v1/me/notifications", user="app-1").body["items"] == []
    assert [
        i["id"]
        for i in app.get("/v1/me/notifications", user="app-1", query={"archived": "only"}).body["items"]
    ] == [nid]
    assert app.post("/v1/me/notifications/read-all", user="app-1").status == 200

    # WHEN the person turns push off THEN the router's next decision honours it
    preferences = app.get("/v1/me/preferences", user="app-1").body
    preferences["channels"]["push"] = False
    assert app.put("/v1/me/preferences", user="app-1", json_body=preferences).status == 200
    assert app.get("/v1/me/preferences", user="app-1").body["channels"]["push"] is False
    put_event(stack, {"event_id": "e2e-app-2", "type": "order_shipped", "user_id": "app-1", "data": SHIPPED})

    def second_decision() -> list[dict]:
        records = app.get("/v1/me/export", user="app-1").body["notifications"]
        return [r for r in records if r["event_id"] == "e2e-app-2"]

    decided = wait_until(second_decision)
    assert any(s["rule"] == "channel_opt_in" and s.get("channel") == "push" for s in decided[0]["decision"])
    assert len(outbox(stack, provider="fcm", recipient=TOKEN)) == 1  # still only the first push

    # the export holds the consent proof; the device goes; then the person is erased
    exported = app.get("/v1/me/export", user="app-1").body
    assert [(c["granted"], c["wording_version"]) for c in exported["consents"]] == [(True, "sms-v3")]
    assert app.delete(f"/v1/me/devices/{TOKEN}", user="app-1").status == 204
    assert app.get("/v1/me/export", user="app-1").body["profile"]["devices"] == {}
    assert app.delete("/v1/me", user="app-1").status == 204
    erased = app.get("/v1/me/export", user="app-1").body
    assert erased["profile"] is None and erased["notifications"] == [] and erased["consents"] == []


def test_a_field_error_is_a_422_in_the_one_error_shape(app: AppClient) -> None:
    answer = app.put("/v1/me/preferences", user="app-2", json_body={"time_zone": "Mars/Olympus_Mons"})

    assert answer.status == 422
    assert answer.body["error"]["code"] == "validation_error"
    assert [d["loc"] for d in answer.body["error"]["details"]] == [["body", "time_zone"]]


@pytest.mark.parametrize(("method", "path"), EVERY_ROUTE)
def test_every_route_refuses_a_request_without_a_valid_token(app: AppClient, method: str, path: str) -> None:
    assert app.request(method, path, user=None).status == 401
    assert app.request(method, path, user=None, token="not.a.jwt").status == 401
