"""The operator console's routes (decision 038) through the template's routes (JWT authorizer with
the admin scope) into the operator function, on moto: the same data as `herald trace`, `herald user`
and `herald suppression` — the record the router wrote, the presence table, the suppression list —
and a lift recorded with who lifted it. Without the admin scope nothing is read or changed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from herald.ses_feedback import soft_bounce_key
from herald.stores.dynamo import to_attributes
from herald.stores.keys import email_address, push_address, sms_address
from herald.stores.notifications import NotificationStore
from herald.stores.presence import PresenceStore
from herald.stores.suppression import SuppressionStore
from herald_cli.timeline import render_trace
from tests.integration.test_router_handler import FakeContext, a_profile, add_users, envelope
from tests.support.api import ApiClient
from tests.support.sqs import sqs_event
from tests.support.stack import MotoStack, fresh_function_module

pytestmark = pytest.mark.integration

ADMIN = "openid herald/admin"


def as_operator(api: ApiClient, method: str, path: str, *, scope: str = ADMIN, **kwargs: Any) -> Any:
    return api.request(method, path, token=api.token("ops-1", scope=scope), **kwargs)


def route(stack: MotoStack, *details: dict[str, Any]) -> None:
    fresh_function_module("functions.router.app").lambda_handler(
        sqs_event(*(envelope(d) for d in details)), FakeContext()
    )


def suppression(stack: MotoStack) -> SuppressionStore:
    return SuppressionStore(stack.client("dynamodb"), stack.tables["SuppressionTable"])


def test_a_persons_notifications_are_listed_newest_first_with_each_channels_outcome(
    api: ApiClient, stack: MotoStack
) -> None:
    # GIVEN two routed notifications for u1, one whose email address is suppressed
    add_users(stack, a_profile("u1"))
    suppression(stack).suppress(
        email_address("useru1@example.com"), "bounced", "ses", contact="useru1@example.com"
    )
    route(stack, {"event_id": "ord-1", "type": "order_shipped", "user_id": "u1"})
    route(stack, {"event_id": "sec-1", "type": "security_alert", "user_id": "u1"})

    # WHEN an operator reads the person's notifications
    answer = as_operator(api, "GET", "/v1/admin/users/u1/notifications", query={"limit": "10"})

    # THEN newest first, each with the channels the router chose or refused and why
    assert answer.status == 200, answer.json
    listed = answer.json["notifications"]
    assert [n["event_id"] for n in listed] == ["sec-1", "ord-1"]
    assert [n["type"] for n in listed] == ["security_alert", "order_shipped"]
    outcomes = {o["channel"]: o for o in listed[0]["channels"]}
    assert outcomes["email"]["state"] == "suppressed" and "suppressed" in outcomes["email"]["reason"]
    assert outcomes["push"]["state"] == "queued"
    assert as_operator(api, "GET", "/v1/admin/users/nobody/notifications").json["notifications"] == []


def test_a_notifications_trace_is_what_herald_trace_prints(api: ApiClient, stack: MotoStack) -> None:
    # GIVEN a routed notification
    add_users(stack, a_profile("u1"))
    route(stack, {"event_id": "ord-1", "type": "order_shipped", "user_id": "u1"})
    record = NotificationStore(stack.client("dynamodb"), stack.tables["NotificationsTable"]).recent("u1", 1)[
        0
    ]

    # WHEN an operator looks it up by its event id and by its notification id
    by_event = as_operator(api, "GET", "/v1/admin/notifications/ord-1")
    by_id = as_operator(api, "GET", f"/v1/admin/notifications/{record.notification_id}")

    # THEN both are the record: every step of the router's decision and every log entry, in order
    assert by_event.status == by_id.status == 200, by_event.json
    assert by_event.json == by_id.json
    trace = by_event.json
    assert (trace["notification_id"], trace["user_id"], trace["locale"]) == (
        record.notification_id,
        "u1",
        "en",
    )
    assert [(s["verdict"], s["rule"], s["reason"]) for s in trace["decision"]] == [
        (str(s.get("verdict")), str(s.get("rule")), str(s.get("reason", ""))) for s in record.decision
    ]
    assert [(e["channel"], e["outcome"]) for e in trace["delivery_log"]] == [
        (e["channel"], e["outcome"]) for e in record.delivery_log
    ]
    assert trace["delivery_log"], "the router logs each channel it queued"
    printed = "\n".join(render_trace(record))  # the CLI's rendering of the same outcomes
    for outcome in trace["channels"]:
        assert f"{outcome['channel']:<8} {outcome['state']}" in printed


def test_an_unknown_notification_is_a_404_that_says_what_to_try(api: ApiClient) -> None:
    answer = as_operator(api, "GET", "/v1/admin/notifications/evt-nowhere")

    assert answer.status == 404
    assert "evt-nowhere" in answer.json["error"]["message"]
    assert "user_id" in answer.json["error"]["message"]  # an audience's event names its member


def test_who_is_online_is_who_routing_counts_as_online(api: ApiClient, stack: MotoStack) -> None:
    # GIVEN u1 confirmed online a minute ago, u2 online but last confirmed too long ago, u3 offline
    presence = PresenceStore(stack.client("dynamodb"), stack.tables["PresenceTable"])
    now_ms = int(datetime.now(UTC).timestamp() * 1000)
    max_age = 21600
    presence.apply("u1", occupied=True, time_ms=now_ms - 60_000, max_age_seconds=max_age)
    presence.apply("u2", occupied=True, time_ms=now_ms - (max_age + 60) * 1000, max_age_seconds=10**6)
    presence.apply("u3", occupied=True, time_ms=now_ms - 120_000, max_age_seconds=max_age)
    presence.apply("u3", occupied=False, time_ms=now_ms - 30_000, max_age_seconds=max_age)

    answer = as_operator(api, "GET", "/v1/admin/presence")

    assert answer.status == 200, answer.json
    assert [p["user_id"] for p in answer.json["people"]] == ["u1"]
    confirmed = datetime.fromisoformat(answer.json["people"][0]["confirmed_at"])
    assert abs(confirmed.timestamp() * 1000 - (now_ms - 60_000)) < 1
    assert answer.json["max_age_seconds"] == max_age


def test_the_online_list_comes_a_page_at_a_time_and_skips_an_unreadable_item(
    api: ApiClient, stack: MotoStack
) -> None:
    presence = PresenceStore(stack.client("dynamodb"), stack.tables["PresenceTable"])
    now_ms = int(datetime.now(UTC).timestamp() * 1000)
    for i in range(5):
        presence.apply(f"p{i}", occupied=True, time_ms=now_ms - i * 1000, max_age_seconds=21600)
    stack.client("dynamodb").put_item(  # a malformed item: routing counts that person offline
        TableName=stack.tables["PresenceTable"],
        Item=to_attributes({"user_id": "broken", "occupied": True, "time_ms": "not a number"}),
    )

    seen: list[str] = []
    cursor: str | None = None
    while True:
        query = {"limit": "2"} | ({"cursor": cursor} if cursor else {})
        page = as_operator(api, "GET", "/v1/admin/presence", query=query)
        assert page.status == 200, page.json
        seen += [p["user_id"] for p in page.json["people"]]
        cursor = page.json["next_cursor"]
        if cursor is None:
            break

    assert sorted(seen) == [f"p{i}" for i in range(5)]


def test_the_suppression_list_shows_each_entry_and_filters_by_channel(
    api: ApiClient, stack: MotoStack
) -> None:
    store = suppression(stack)
    store.suppress(
        email_address("a@example.com"), "bounced", "ses", contact="a@example.com", notification_id="ntf-1"
    )
    store.suppress(sms_address("+14155550100"), "opted_out", "twilio", contact="+14155550100")
    store.suppress(push_address("tok-dead-123"), "dead_token", "fcm")

    everything = as_operator(api, "GET", "/v1/admin/suppressions").json["entries"]
    emails = as_operator(api, "GET", "/v1/admin/suppressions", query={"channel": "email"}).json["entries"]

    assert sorted((e["channel"], e["contact"], e["reason"], e["source"]) for e in everything) == [
        ("email", "a@example.com", "bounced", "ses"),
        ("push", None, "dead_token", "fcm"),  # a token is never kept in plain
        ("sms", "+14155550100", "opted_out", "twilio"),
    ]
    assert [(e["address"], e["notification_id"]) for e in emails] == [
        (email_address("a@example.com"), "ntf-1")
    ]


def test_the_suppression_list_comes_a_page_at_a_time_and_one_contact_in_one_read(
    api: ApiClient, stack: MotoStack
) -> None:
    # GIVEN 7 suppressed addresses and a lift record (never listed)
    store = suppression(stack)
    contacts = [f"user{i}@example.com" for i in range(7)]
    for contact in contacts:
        store.suppress(email_address(contact), "bounced", "ses", contact=contact)
    store.suppress(email_address("lifted@example.com"), "bounced", "ses", contact="lifted@example.com")
    store.lift(email_address("lifted@example.com"), by="ops-0", why="fixed")

    # WHEN an operator walks the list 3 at a time
    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        query = {"limit": "3"} | ({"cursor": cursor} if cursor else {})
        page = as_operator(api, "GET", "/v1/admin/suppressions", query=query)
        assert page.status == 200, page.json
        assert len(page.json["entries"]) <= 3
        seen += [e["contact"] for e in page.json["entries"]]
        pages += 1
        cursor = page.json["next_cursor"]
        if cursor is None:
            break

    # THEN every entry comes exactly once, across pages
    assert sorted(seen) == sorted(contacts) and pages >= 3
    one = as_operator(api, "GET", "/v1/admin/suppressions", query={"contact": "user4@example.com"}).json
    assert [e["contact"] for e in one["entries"]] == ["user4@example.com"] and one["next_cursor"] is None
    none = as_operator(api, "GET", "/v1/admin/suppressions", query={"contact": "lifted@example.com"})
    assert none.json["entries"] == []
    forged = as_operator(api, "GET", "/v1/admin/suppressions", query={"cursor": "bm90LWEtY3Vyc29y"})
    assert forged.status == 422
    assert as_operator(api, "GET", "/v1/admin/suppressions", query={"channel": "webhook"}).status == 422


def test_a_lift_is_recorded_with_the_operator_and_resets_the_soft_bounce_count(
    api: ApiClient, stack: MotoStack
) -> None:
    # GIVEN a bounced address with soft bounces counted
    address = email_address("a@example.com")
    suppression(stack).suppress(address, "bounced", "ses", contact="a@example.com")
    counters = stack.tables["RateCountersTable"]
    dynamodb = stack.client("dynamodb")
    dynamodb.put_item(TableName=counters, Item=to_attributes({**soft_bounce_key(address), "count": 2}))

    # WHEN an operator lifts it, naming the entry by its key as the console does
    answer = as_operator(
        api,
        "POST",
        "/v1/admin/suppressions/lift",
        json={"contact": address, "why": "mailbox fixed, ticket 12"},
    )

    # THEN it is gone, the lift is recorded with who and why, and the soft-bounce count is reset
    assert answer.status == 200, answer.json
    assert answer.json | {"since": "-"} == {
        "address": address,
        "was": "bounced",
        "source": "ses",
        "since": "-",
        "lifted_by": "ops-1",
        "why": "mailbox fixed, ticket 12",
    }
    assert not suppression(stack).is_suppressed(address)
    [record] = list(suppression(stack).entries(lifted=True))
    assert (record["lifted_by"], record["lift_reason"]) == ("ops-1", "mailbox fixed, ticket 12")
    assert "Item" not in dynamodb.get_item(TableName=counters, Key=to_attributes(soft_bounce_key(address)))
    again = as_operator(api, "POST", "/v1/admin/suppressions/lift", json={"contact": address, "why": "again"})
    assert again.status == 404


def test_a_persons_own_stop_is_lifted_only_with_force(api: ApiClient, stack: MotoStack) -> None:
    address = sms_address("+14155550100")
    suppression(stack).suppress(address, "opted_out", "twilio", contact="+14155550100")
    body = {"contact": "+14155550100", "why": "they asked support"}

    refused = as_operator(api, "POST", "/v1/admin/suppressions/lift", json=body)
    assert refused.status == 409 and "START" in refused.json["error"]["message"]
    assert refused.json["error"]["code"] == "consent_required"  # the console offers `force` on it
    assert suppression(stack).is_suppressed(address)

    forced = as_operator(api, "POST", "/v1/admin/suppressions/lift", json=body | {"force": True})
    assert forced.status == 200, forced.json
    assert not suppression(stack).is_suppressed(address)


def test_a_lift_of_something_that_is_no_contact_is_a_field_error(api: ApiClient) -> None:
    answer = as_operator(
        api, "POST", "/v1/admin/suppressions/lift", json={"contact": "415 555", "why": "x" * 5}
    )

    assert answer.status == 422
    assert answer.json["error"]["details"][0]["loc"] == ["body", "contact"]


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/v1/admin/users/u1/notifications", None),
        ("GET", "/v1/admin/notifications/ord-1", None),
        ("GET", "/v1/admin/presence", None),
        ("GET", "/v1/admin/suppressions", None),
        ("POST", "/v1/admin/suppressions/lift", {"contact": "a@example.com", "why": "because"}),
    ],
)
def test_without_the_admin_scope_nothing_is_read_or_lifted(
    api: ApiClient, stack: MotoStack, method: str, path: str, body: dict[str, Any] | None
) -> None:
    suppression(stack).suppress(email_address("a@example.com"), "bounced", "ses", contact="a@example.com")

    for scope in ("openid", "openid herald/admins"):
        answer = as_operator(api, method, path, scope=scope, json=body)
        assert answer.status == 403, (path, scope)
    assert api.request(method, path, user=None, json=body).status == 401
    assert api.events == []  # API Gateway refused: the function never ran
    assert suppression(stack).is_suppressed(email_address("a@example.com"))


def test_the_function_refuses_an_event_without_the_scope_even_if_a_route_forgot_it(
    api: ApiClient, stack: MotoStack
) -> None:
    """A route wired without AuthorizationScopes fails closed: the function checks the scope too."""
    module = fresh_function_module("functions.operator.app")
    event = {
        "version": "2.0",
        "routeKey": "GET /v1/admin/presence",
        "rawPath": "/v1/admin/presence",
        "rawQueryString": "",
        "headers": {},
        "requestContext": {
            "http": {"method": "GET", "path": "/v1/admin/presence", "sourceIp": "127.0.0.1"},
            "authorizer": {"jwt": {"claims": {"sub": "u1", "scope": "openid"}, "scopes": None}},
            "requestId": "r",
            "routeKey": "GET /v1/admin/presence",
            "stage": "$default",
            "timeEpoch": int((datetime.now(UTC) - timedelta(seconds=1)).timestamp() * 1000),
        },
        "isBase64Encoded": False,
    }

    answer = module.lambda_handler(event, FakeContext())

    assert answer["statusCode"] == 403
