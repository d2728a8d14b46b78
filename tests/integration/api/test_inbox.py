"""`/v1/me/notifications` through the template's routes and JWT authorizer, on moto: the listing and
its filters and cursor, counts, read / seen / archive / read-all, and who may see what."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from herald.stores.dynamo import from_attributes
from tests.integration.api.conftest import T0, seed_notification
from tests.integration.test_router_handler import FakeContext, a_profile, add_users, envelope
from tests.support.api import ApiClient
from tests.support.sqs import sqs_event
from tests.support.stack import MotoStack, fresh_function_module

pytestmark = pytest.mark.integration

SHIPPED = {
    "order_id": "999",
    "carrier": "UPS",
    "tracking_url": "https://example.com/t/999",
    "address": "1 Rua Augusta, Lisbon",
}
ROUTES_WITH_ID = ("read", "seen", "archive")


def ids(answer: Any) -> list[str]:
    return [item["id"] for item in answer.json["items"]]


def test_the_listing_is_newest_first_with_each_items_render_and_state(
    api: ApiClient, stack: MotoStack
) -> None:
    older = seed_notification(stack, "u1", "ord-1", created_at=T0, data=SHIPPED)
    newer = seed_notification(stack, "u1", "ord-2", created_at=T0 + timedelta(minutes=1), data=SHIPPED)

    answer = api.get("/v1/me/notifications")

    assert answer.status == 200
    assert ids(answer) == [newer, older]
    item = answer.json["items"][0]
    assert item["type"] == "order_shipped" and item["category"] == "transactional"
    assert "999" in item["render"]["title"] + item["render"]["body"]
    assert item["data"] == SHIPPED
    assert item["created_at"] == "2026-11-30T12:01:00Z"
    assert (item["seen_at"], item["read_at"], item["archived_at"]) == (None, None, None)
    assert answer.json["next_cursor"] is None


def test_an_item_whose_data_does_not_render_is_listed_without_a_render(
    api: ApiClient, stack: MotoStack
) -> None:
    seed_notification(stack, "u1", "ord-1", data={"order_id": "1"})  # no carrier for the template

    assert api.get("/v1/me/notifications").json["items"][0]["render"] is None


def test_an_item_shows_what_its_realtime_message_showed(api: ApiClient, stack: MotoStack) -> None:
    shown = {"title": "Your order is on its way", "body": "UPS has it", "locale": "en"}
    seed_notification(stack, "u1", "ord-1", data={"order_id": "1"}, in_app=shown)

    assert api.get("/v1/me/notifications").json["items"][0]["render"] == {
        "title": "Your order is on its way",
        "body": "UPS has it",
    }


def test_read_seen_and_archive_are_idempotent_and_counted(api: ApiClient, stack: MotoStack) -> None:
    first = seed_notification(stack, "u1", "ord-1", data=SHIPPED)
    second = seed_notification(stack, "u1", "ord-2", created_at=T0 + timedelta(seconds=1), data=SHIPPED)
    third = seed_notification(stack, "u1", "ord-3", created_at=T0 + timedelta(seconds=2), data=SHIPPED)
    assert api.get("/v1/me/notifications/count").json == {"unread": 3, "unseen": 3}

    seen = api.post(f"/v1/me/notifications/{first}/seen")
    assert seen.status == 200 and seen.json["seen_at"] and seen.json["read_at"] is None
    assert api.get("/v1/me/notifications/count").json == {"unread": 3, "unseen": 2}

    read = api.post(f"/v1/me/notifications/{second}/read")
    again = api.post(f"/v1/me/notifications/{second}/read")
    assert read.status == again.status == 200
    assert again.json["read_at"] == read.json["read_at"]  # the first read is kept
    assert read.json["seen_at"] == read.json["read_at"]  # reading is seeing
    assert api.get("/v1/me/notifications/count").json == {"unread": 2, "unseen": 1}

    archived = api.post(f"/v1/me/notifications/{third}/archive")
    assert archived.status == 200 and archived.json["archived_at"]
    assert (
        api.post(f"/v1/me/notifications/{third}/archive").json["archived_at"] == archived.json["archived_at"]
    )
    assert api.get("/v1/me/notifications/count").json == {"unread": 1, "unseen": 0}

    assert ids(api.get("/v1/me/notifications", query={"unread": "true"})) == [first]
    assert ids(api.get("/v1/me/notifications")) == [second, first]
    assert ids(api.get("/v1/me/notifications", query={"archived": "only"})) == [third]
    assert ids(api.get("/v1/me/notifications", query={"archived": "include"})) == [third, second, first]


def test_read_all_reads_everything_created_before_it_and_nothing_after(
    api: ApiClient, stack: MotoStack
) -> None:
    before = [
        seed_notification(stack, "u1", f"ord-{i}", created_at=T0 + timedelta(seconds=i)) for i in range(3)
    ]

    answer = api.post("/v1/me/notifications/read-all")

    assert answer.status == 200 and answer.json["read_all_at"]
    assert api.get("/v1/me/notifications/count").json == {"unread": 0, "unseen": 0}
    listed = api.get("/v1/me/notifications").json["items"]
    assert {item["id"] for item in listed} == set(before)
    assert all(item["read_at"] == answer.json["read_all_at"] for item in listed)

    later = seed_notification(stack, "u1", "ord-late", created_at=T0 + timedelta(days=365))
    assert api.get("/v1/me/notifications/count").json == {"unread": 1, "unseen": 1}
    assert ids(api.get("/v1/me/notifications", query={"unread": "true"})) == [later]


def test_the_cursor_walks_every_page_once(api: ApiClient, stack: MotoStack) -> None:
    seeded = [
        seed_notification(stack, "u1", f"ord-{i}", created_at=T0 + timedelta(seconds=i)) for i in range(7)
    ]
    listed: list[str] = []
    query: dict[str, Any] = {"limit": 3}
    for _ in range(5):
        page = api.get("/v1/me/notifications", query=query)
        assert page.status == 200 and len(page.json["items"]) <= 3
        listed += ids(page)
        if page.json["next_cursor"] is None:
            break
        query = {"limit": 3, "cursor": page.json["next_cursor"]}
    assert listed == list(reversed(seeded))


def test_invalid_queries_are_field_errors(api: ApiClient) -> None:
    for query, where in (
        ({"limit": 101}, ["query", "limit"]),
        ({"limit": 0}, ["query", "limit"]),
        ({"archived": "sometimes"}, ["query", "archived"]),
        ({"cursor": "not-a-cursor"}, ["query", "cursor"]),
    ):
        answer = api.get("/v1/me/notifications", query=query)
        assert answer.status in (400, 422), query
        assert answer.json["error"]["details"][0]["loc"] == where, query
        assert set(answer.json["error"]) == {"code", "message", "details"}


def test_a_cursor_from_another_listing_is_refused(api: ApiClient, stack: MotoStack) -> None:
    for i in range(3):
        seed_notification(stack, "u1", f"ord-{i}", created_at=T0 + timedelta(seconds=i))
    cursor = api.get("/v1/me/notifications", query={"limit": 1, "unread": "true"}).json["next_cursor"]

    answer = api.get("/v1/me/notifications", query={"limit": 1, "cursor": cursor})

    assert answer.status == 400 and answer.json["error"]["details"][0]["type"] == "invalid_cursor"


def test_another_persons_notifications_are_not_found_and_never_listed(
    api: ApiClient, stack: MotoStack
) -> None:
    """GIVEN u1's notification WHEN u2 lists, counts or marks it THEN u2 sees nothing, gets 404 (never
    403) and u1's notification is unchanged."""
    theirs = seed_notification(stack, "u1", "ord-1")

    assert api.get("/v1/me/notifications", user="u2").json["items"] == []
    assert api.get("/v1/me/notifications/count", user="u2").json == {"unread": 0, "unseen": 0}
    for action in ROUTES_WITH_ID:
        answer = api.post(f"/v1/me/notifications/{theirs}/{action}", user="u2")
        assert answer.status == 404, action
        assert answer.json["error"]["code"] == "not_found"
    api.post("/v1/me/notifications/read-all", user="u2")

    assert api.get("/v1/me/notifications/count").json == {"unread": 1, "unseen": 1}
    item = api.get("/v1/me/notifications").json["items"][0]
    assert (item["seen_at"], item["read_at"], item["archived_at"]) == (None, None, None)


def test_unknown_and_non_inbox_notifications_are_not_found(api: ApiClient, stack: MotoStack) -> None:
    skipped = seed_notification(stack, "u1", "ord-skipped", inbox=False)

    assert api.get("/v1/me/notifications").json["items"] == []
    for target in (skipped, "ntf-" + "0" * 32, "not-an-id"):
        assert api.post(f"/v1/me/notifications/{target}/read").status == 404, target


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1/me/notifications"),
        ("GET", "/v1/me/notifications/count"),
        ("POST", "/v1/me/notifications/read-all"),
        *[("POST", f"/v1/me/notifications/ntf-{'0' * 32}/{action}") for action in ROUTES_WITH_ID],
    ],
)
def test_every_inbox_route_refuses_a_missing_or_bad_token(api: ApiClient, method: str, path: str) -> None:
    for token in (
        None,
        api.issuer.token("u1", ttl=-60),
        api.issuer.token("u1", audience="someone-else"),
        "x.y.z",
    ):
        answer = api.request(method, path, user=None, token=token)
        assert answer.status == 401, (path, token)
    assert api.events == []  # the function never ran


def test_the_router_puts_inbox_notifications_in_the_inbox_and_skipped_ones_out(
    api: ApiClient, stack: MotoStack
) -> None:
    """GIVEN a routed notification for a known user and one for an unknown user WHEN the person
    reads their inbox THEN theirs is there, unread; the skipped one is in nobody's inbox."""

    router = fresh_function_module("functions.router.app")
    add_users(stack, a_profile("u1"))
    router.lambda_handler(
        sqs_event(
            envelope({"event_id": "ord-9", "type": "order_shipped", "user_id": "u1", "data": SHIPPED}),
            envelope({"event_id": "ord-9b", "type": "order_shipped", "user_id": "nobody", "data": SHIPPED}),
        ),
        FakeContext(),
    )

    items = api.get("/v1/me/notifications").json["items"]
    assert [item["data"]["order_id"] for item in items] == ["999"]
    assert api.get("/v1/me/notifications/count").json == {"unread": 1, "unseen": 1}
    assert api.get("/v1/me/notifications", user="nobody").json["items"] == []
    records = stack.client("dynamodb").scan(TableName=stack.tables["NotificationsTable"])["Items"]
    by_user = {from_attributes(r)["user_id"]: from_attributes(r) for r in records}
    assert by_user["u1"]["unread_at"] and by_user["u1"]["inbox"] is True
    assert "unread_at" not in by_user["nobody"] and by_user["nobody"]["inbox"] is False


@pytest.mark.parametrize("archived", ["exclude", "include"])
def test_a_cursor_from_before_a_read_all_ends_the_unread_listing(
    api: ApiClient, stack: MotoStack, archived: str
) -> None:
    """DynamoDB refuses a start key outside the key condition's range: a cursor at or below the
    read-all mark must end the listing, not reach DynamoDB."""
    for i in range(3):
        seed_notification(stack, "u1", f"ord-{i}", created_at=T0 + timedelta(seconds=i))
    query = {"limit": 1, "unread": "true", "archived": archived}
    cursor = api.get("/v1/me/notifications", query=query).json["next_cursor"]
    assert cursor
    api.post("/v1/me/notifications/read-all")
    start_keys: list[object] = []  # moto serves such a start key; AWS answers ValidationException
    client = api.module.services.dynamodb
    client.meta.events.register(
        "provide-client-params.dynamodb.Query",
        lambda params, **_: start_keys.append(params.get("ExclusiveStartKey")),
    )

    answer = api.get("/v1/me/notifications", query={**query, "cursor": cursor})

    assert answer.status == 200 and answer.json == {"items": [], "next_cursor": None}
    assert [key for key in start_keys if key] == []


def test_a_forged_cursor_is_refused_before_it_reaches_dynamodb(api: ApiClient) -> None:
    import base64
    import json

    for sort in ("", "2026-13-99", "~"):
        raw = json.dumps(["unread", sort, "ntf-" + "0" * 32]).encode()
        cursor = base64.urlsafe_b64encode(raw).decode().rstrip("=")
        answer = api.get("/v1/me/notifications", query={"unread": "true", "cursor": cursor})
        assert answer.status == 400, sort
        assert answer.json["error"]["details"][0]["type"] == "invalid_cursor"


def test_expired_notifications_are_neither_listed_nor_counted(api: ApiClient, stack: MotoStack) -> None:
    """DynamoDB deletes expired items within days, not at once: until then they are not shown."""
    import time

    seed_notification(stack, "u1", "old", expires_at=int(time.time()) - 60)
    fresh = seed_notification(stack, "u1", "new", created_at=T0 + timedelta(seconds=1))

    assert api.get("/v1/me/notifications/count").json == {"unread": 1, "unseen": 1}
    assert ids(api.get("/v1/me/notifications")) == [fresh]
    assert ids(api.get("/v1/me/notifications", query={"unread": "true"})) == [fresh]


def test_read_all_for_an_erased_person_writes_nothing(api: ApiClient, stack: MotoStack) -> None:
    seed_notification(stack, "u1", "ord-1")
    assert api.delete("/v1/me").status == 204

    answer = api.post("/v1/me/notifications/read-all")

    assert answer.status == 404 and answer.json["error"]["code"] == "not_found"
    assert api.get("/v1/me/export").json["inbox"] is None


def test_a_subject_in_herald_s_reserved_namespace_is_nobody(api: ApiClient, stack: MotoStack) -> None:
    answer = api.get("/v1/me/export", user="#held#sched-1")

    assert answer.status == 401 and answer.json["error"]["code"] == "unauthorized"


def test_an_unexpected_failure_is_a_500_in_the_one_shape(
    api: ApiClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    from botocore.exceptions import ClientError

    from herald.devices import Contended
    from herald.inbox import Inbox

    def throttled(self: Inbox, user_id: str) -> None:
        raise ClientError({"Error": {"Code": "ThrottlingException", "Message": "slow down"}}, "Query")

    monkeypatch.setattr(Inbox, "counts", throttled)
    answer = api.get("/v1/me/notifications/count")
    assert answer.status == 500
    assert answer.json == {
        "error": {"code": "internal", "message": "an unexpected error occurred: retry later", "details": []}
    }

    def contended(self: Inbox, user_id: str) -> None:
        raise Contended("lost every race")

    monkeypatch.setattr(Inbox, "counts", contended)
    answer = api.get("/v1/me/notifications/count")
    assert answer.status == 409 and answer.json["error"]["code"] == "conflict"


@pytest.mark.parametrize("mark", ["read", "archive", "ack"])
def test_a_read_archived_or_acknowledged_item_leaves_the_digest_index(
    api: ApiClient, stack: MotoStack, mark: str
) -> None:
    notification_id = seed_notification(stack, "u1", "ord-1")
    dynamodb = stack.client("dynamodb")
    key = {"user_id": {"S": "u1"}, "notification_id": {"S": notification_id}}
    dynamodb.update_item(  # awaiting its digest, as the router writes a medium notification
        TableName=stack.tables["NotificationsTable"],
        Key=key,
        UpdateExpression="SET digest_day = :d, digest_due_at = :t",
        ExpressionAttributeValues={":d": {"S": "2026-12-01"}, ":t": {"S": "2026-12-01T12:00:00+00:00"}},
    )

    assert api.post(f"/v1/me/notifications/{notification_id}/{mark}").status == 200

    item = dynamodb.get_item(TableName=stack.tables["NotificationsTable"], Key=key, ConsistentRead=True)[
        "Item"
    ]
    assert "digest_day" not in item and "digest_due_at" not in item
    assert (
        dynamodb.scan(TableName=stack.tables["NotificationsTable"], IndexName="DigestPending")["Items"] == []
    )
