"""`GET` / `PUT /v1/me/preferences` through the template's route and JWT authorizer into the API
function, on moto; and the router's next decision reading what was put (decision 016)."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from herald.catalog import load_catalog
from herald.directory import Directory, UserUpserted
from herald.routing.decision import notification_id_for
from herald.stores.dynamo import from_attributes
from herald.stores.users import UserStore
from tests.support.api import ApiClient
from tests.support.sqs import sqs_event
from tests.support.stack import MotoStack, fresh_function_module

pytestmark = pytest.mark.integration

PATH = "/v1/me/preferences"
ROUTES = [("GET", PATH, None), ("PUT", PATH, {"locale": "fr"})]


def forged_token(api: ApiClient, user: str = "u1") -> str:
    """Right issuer, audience and key id, signed by another key."""
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    now = int(time.time())
    claims = {"iss": api.issuer.issuer, "aud": api.issuer.audience, "sub": user, "iat": now, "exp": now + 600}
    return jwt.encode(claims, other, algorithm="RS256", headers={"kid": api.issuer.credentials.kid})


def preferences_of(api: ApiClient, user: str) -> dict[str, Any]:
    answer = api.get(PATH, user=user)
    assert answer.status == 200
    return answer.json


def error_types(answer: Any) -> dict[tuple[str, ...], str]:
    assert answer.status == 422, answer.json
    assert answer.json["error"]["code"] == "validation_error"
    return {tuple(d["loc"]): d["type"] for d in answer.json["error"]["details"]}


# -- the routes ----------------------------------------------------------------------------------


def test_a_put_document_is_what_the_next_get_returns(api: ApiClient, stack: MotoStack) -> None:
    Directory(stack.client("dynamodb"), stack.tables["UsersTable"]).apply(
        UserUpserted(user_id="u1", version=1, locale="de", time_zone="Europe/Berlin")
    )
    assert preferences_of(api, "u1")["locale"] == "de"  # the directory's defaults

    answer = api.put(
        PATH,
        json={
            "channels": {"push": False},
            "muted_categories": ["marketing"],
            "muted_types": ["comment_reply"],
            "muted_channels": {"transactional": ["sms"]},
            "marketing_opt_in": False,
            "quiet_hours": {"start": "22:00", "end": "07:00"},
            "time_zone": "America/New_York",
            "locale": "en_us",
        },
    )

    assert answer.status == 200
    expected = {
        "channels": {"email": True, "push": False, "sms": True, "realtime": True},
        "muted_categories": ["marketing"],
        "muted_types": ["comment_reply"],
        "muted_channels": {"transactional": ["sms"]},
        "marketing_opt_in": False,
        "quiet_hours": {"start": "22:00:00", "end": "07:00:00"},
        "time_zone": "America/New_York",
        "locale": "en-US",
    }
    assert answer.json == expected
    assert preferences_of(api, "u1") == expected
    # What GET returns is a valid PUT that changes nothing.
    assert api.put(PATH, json=expected).json == expected


@pytest.mark.parametrize(("method", "path", "body"), ROUTES)
def test_no_token_a_forged_one_or_an_expired_one_is_401(
    api: ApiClient, method: str, path: str, body: Any
) -> None:
    for token in (None, forged_token(api), api.issuer.token("u1", ttl=-10)):
        answer = api.request(method, path, user=None, token=token, json=body)
        assert answer.status == 401, (token, answer.json)
    assert api.events == []  # the authorizer refused: the function never ran


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        ({"time_zone": "Mars/Olympus_Mons"}, {("body", "time_zone"): "unknown_time_zone"}),
        ({"muted_categories": ["security"]}, {("body", "muted_categories", "0"): "cannot_mute"}),
        ({"muted_types": ["order_shipped", "security_alert"]}, {("body", "muted_types", "1"): "cannot_mute"}),
        ({"muted_types": ["no_such_type"]}, {("body", "muted_types", "0"): "unknown_type"}),
        ({"channels": {"webhook": True}}, {("body", "channels", "webhook"): "extra_forbidden"}),
        (
            {"quiet_hours": {"start": "25:00", "end": "07:00"}},
            {("body", "quiet_hours", "start"): "time_parsing"},
        ),
        ({"locale": "?"}, {("body", "locale"): "string_too_short"}),
    ],
)
def test_an_invalid_document_is_422_with_field_errors_and_changes_nothing(
    api: ApiClient, document: dict[str, Any], expected: dict
) -> None:
    before = preferences_of(api, "u1")

    assert error_types(api.put(PATH, json=document)) == expected
    assert preferences_of(api, "u1") == before


def test_every_error_of_a_document_is_reported_at_once(api: ApiClient) -> None:
    answer = api.put(PATH, json={"time_zone": "Nowhere", "muted_categories": ["system"], "locale": "!!!"})

    assert error_types(answer) == {
        ("body", "time_zone"): "unknown_time_zone",
        ("body", "muted_categories", "0"): "cannot_mute",
        ("body", "locale"): "invalid_locale",
    }
    assert "Nowhere" not in answer.body.decode()  # the input is not echoed


def test_the_token_subject_is_the_only_user_id(api: ApiClient) -> None:
    api.put(PATH, json={"locale": "fr"}, user="u1")
    u1 = preferences_of(api, "u1")

    in_body = api.put(PATH, json={"locale": "de", "user_id": "u1"}, user="u2")
    in_query = api.put(PATH, json={"locale": "de"}, query={"user_id": "u1"}, user="u2")

    assert error_types(in_body) == {("body", "user_id"): "extra_forbidden"}
    assert in_query.status == 200
    assert preferences_of(api, "u1") == u1
    assert preferences_of(api, "u2")["locale"] == "de"


# -- the router's next decision ------------------------------------------------------------------


class RouterContext:
    function_name = "herald-router"
    memory_limit_in_mb = 512
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:herald-router"
    aws_request_id = "req-router"

    @staticmethod
    def get_remaining_time_in_millis() -> int:
        return 60_000


def route(stack: MotoStack, event_id: str, user_id: str, type_name: str = "order_shipped") -> dict[str, Any]:
    """Route one NotificationRequested through the router handler; returns its notification record."""

    router = fresh_function_module("functions.router.app")
    body = {
        "version": "0",
        "id": f"id-{event_id}",
        "detail-type": "NotificationRequested",
        "source": "tests",
        "account": "123456789012",
        "time": "2026-11-30T12:00:00Z",
        "region": "us-east-1",
        "resources": [],
        "detail": {
            "event_id": event_id,
            "type": type_name,
            "user_id": user_id,
            "data": load_catalog().types[type_name].sample_data,
        },
    }
    assert router.lambda_handler(sqs_event(json.dumps(body)), RouterContext()) == {"batchItemFailures": []}
    item = stack.client("dynamodb").get_item(
        TableName=stack.tables["NotificationsTable"],
        Key={"user_id": {"S": user_id}, "notification_id": {"S": notification_id_for(event_id)}},
        ConsistentRead=True,
    )["Item"]
    return from_attributes(item)


def planned(record: dict[str, Any]) -> dict[str, Any]:
    return {p["channel"]: p for p in record["plan"]}


def steps(record: dict[str, Any], rule: str) -> list[tuple[str, str | None]]:
    return [(s["verdict"], s.get("channel")) for s in record["decision"] if s["rule"] == rule]


def test_the_routers_next_decision_uses_the_new_preferences(api: ApiClient, stack: MotoStack) -> None:
    users_table = stack.tables["UsersTable"]
    Directory(stack.client("dynamodb"), users_table).apply(
        UserUpserted(user_id="42", version=1, email="ann@example.com", time_zone="UTC")
    )
    UserStore(stack.client("dynamodb"), users_table).register_device("42", "tok-42", "android")

    before = route(stack, "before", "42")
    assert set(planned(before)) == {"push"}  # medium urgency, offline: push first

    assert api.put(PATH, json={"channels": {"push": False}}, user="42").status == 200
    push_off = route(stack, "push-off", "42")

    assert "push" not in planned(push_off)
    assert ("block", "push") in steps(push_off, "channel_opt_in")

    zone = "Asia/Tokyo"
    local = datetime.now(UTC).astimezone(ZoneInfo(zone))
    window = {
        "start": (local - timedelta(hours=1)).strftime("%H:00"),
        "end": (local + timedelta(hours=3)).strftime("%H:00"),
    }
    answer = api.put(PATH, json={"quiet_hours": window, "time_zone": zone}, user="42")
    assert answer.status == 200
    quiet = route(stack, "quiet", "42")

    assert set(planned(quiet)) == {"push"}  # push is the product's default again
    assert planned(quiet)["push"].get("not_before") is not None  # deferred to the end of quiet hours
    assert ("defer", "push") in steps(quiet, "quiet_hours")
    assert any("Asia/Tokyo" in s["reason"] for s in quiet["decision"])  # in the zone that was put


def test_a_matrix_cell_turned_off_persists_and_changes_only_that_categorys_routing(
    api: ApiClient, stack: MotoStack
) -> None:
    # GIVEN a person with an email address and a device, offline
    users_table = stack.tables["UsersTable"]
    Directory(stack.client("dynamodb"), users_table).apply(
        UserUpserted(user_id="42", version=1, email="ann@example.com", time_zone="UTC")
    )
    UserStore(stack.client("dynamodb"), users_table).register_device("42", "tok-42", "android")
    before = route(stack, "receipt-before", "42", "payment_receipt")
    chain = [step["delivery"]["channel"] for step in planned_escalation(before)]
    assert chain == ["push", "email"]  # high urgency: push, then email if not acknowledged

    # WHEN they turn email off for transactional notifications only
    answer = api.put(PATH, json={"muted_channels": {"transactional": ["email"]}}, user="42")

    # THEN the next GET shows the cell off, a transactional receipt goes without its email fallback,
    # and a security alert still emails
    assert answer.status == 200, answer.json
    assert preferences_of(api, "42")["muted_channels"] == {"transactional": ["email"]}
    receipt = route(stack, "receipt-after", "42", "payment_receipt")
    assert set(planned(receipt)) == {"push"} and not planned_escalation(receipt)
    assert ("block", "email") in steps(receipt, "channel_opt_in")
    alert = route(stack, "alert", "42", "security_alert")
    assert "email" in planned(alert)


def test_security_and_system_cells_cannot_be_turned_off(api: ApiClient) -> None:
    answer = api.put(PATH, json={"muted_channels": {"security": ["email"]}}, user="42")

    assert answer.status == 422
    assert error_types(answer) == {("body", "muted_channels", "security", "[key]"): "cannot_mute"}


def planned_escalation(record: dict[str, Any]) -> list[dict[str, Any]]:
    return [step for p in record["plan"] if "escalation" in p for step in p["escalation"]["steps"]]
