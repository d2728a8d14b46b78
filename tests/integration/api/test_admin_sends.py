"""`POST /v1/admin/notifications` through the template's route (JWT authorizer with the admin
scope) into the operator function (decision 038), on moto: an administrator's send goes on the Herald bus as a
producer's `NotificationRequested` (the bus rule takes it to the ingest queue), checked against the
catalog first; without the admin scope, nothing is sent."""

from __future__ import annotations

import json
from typing import Any

import pytest

from herald.catalog import load_catalog
from tests.support.api import ApiClient
from tests.support.stack import MotoStack

pytestmark = pytest.mark.integration

PATH = "/v1/admin/notifications"
SHIPPED = dict(load_catalog().types["order_shipped"].sample_data)


def as_admin(api: ApiClient, body: dict[str, Any], scope: str = "herald/admin") -> Any:
    return api.post(PATH, token=api.token("ops-1", scope=f"openid {scope}"), json=body)


def ingested(stack: MotoStack) -> list[dict[str, Any]]:
    return [json.loads(m["Body"]) for m in stack.drain("Ingest")]


def test_an_admins_send_is_a_producers_event_on_the_bus(api: ApiClient, stack: MotoStack) -> None:
    answer = as_admin(api, {"type": "order_shipped", "user_id": "42", "data": SHIPPED})

    assert answer.status == 202, answer.json
    event_id = answer.json["event_id"]
    assert event_id.startswith("manual-") and answer.json["accepted"] == "order_shipped to user 42"
    [event] = ingested(stack)
    assert (event["detail-type"], event["source"]) == ("NotificationRequested", "herald.manual")
    assert event["detail"] == {
        "event_id": event_id,
        "type": "order_shipped",
        "user_id": "42",
        "data": SHIPPED,
    }


def test_an_audience_and_the_admins_own_event_id_go_as_given(api: ApiClient, stack: MotoStack) -> None:
    body = {
        "type": "security_alert",
        "audience": {"role": "admin"},
        "data": dict(load_catalog().types["security_alert"].sample_data),
        "event_id": "maintenance-2026-12-01",
        "send_at": "2030-01-01T09:00:00+00:00",
    }
    for _ in range(2):  # a retried request: the same event id, so the router delivers it once
        assert as_admin(api, body).status == 202
    events = ingested(stack)
    # prefixed: an admin's id can never be a producer's (the router deduplicates on event ids)
    assert [e["detail"]["event_id"] for e in events] == ["manual-maintenance-2026-12-01"] * 2
    assert events[0]["detail"]["audience"] == {"role": "admin"}
    assert events[0]["detail"]["send_at"].startswith("2030-01-01T09:00:00")


@pytest.mark.parametrize(
    ("body", "complaint"),
    [
        ({"type": "no_such_type", "user_id": "42"}, "no_such_type"),
        ({"type": "order_shipped", "user_id": "42", "data": {}}, "requires data fields"),
        (
            {"type": "order_shipped", "user_id": "42", "audience": {"all": True}, "data": SHIPPED},
            "exactly one",
        ),
        ({"type": "order_shipped", "audience": {"all": True}, "data": SHIPPED, "colour": "red"}, "colour"),
        # sent as manual-<id>: an id the bus event could not carry is refused, not a 500
        ({"type": "order_shipped", "user_id": "42", "data": SHIPPED, "event_id": "x" * 122}, "event_id"),
    ],
)
def test_a_send_the_catalog_refuses_is_422_and_nothing_goes_out(
    api: ApiClient, stack: MotoStack, body: dict[str, Any], complaint: str
) -> None:
    answer = as_admin(api, body)
    assert answer.status == 422, answer.json
    assert complaint in json.dumps(answer.json)
    assert ingested(stack) == []


def test_a_scope_given_as_an_array_claim_is_accepted_too(api: ApiClient, stack: MotoStack) -> None:
    body = {"type": "order_shipped", "user_id": "42", "data": SHIPPED}
    answer = api.post(PATH, token=api.token("ops-2", scp=["openid", "herald/admin"]), json=body)
    assert answer.status == 202, answer.json
    assert len(ingested(stack)) == 1


def test_without_the_admin_scope_nothing_is_sent(api: ApiClient, stack: MotoStack) -> None:
    body = {"type": "order_shipped", "user_id": "42", "data": SHIPPED}
    assert api.post(PATH, user="u1", json=body).status == 403  # a person's own token
    assert as_admin(api, body, scope="herald/read").status == 403
    assert api.post(PATH, user=None, json=body).status == 401
    assert ingested(stack) == []
