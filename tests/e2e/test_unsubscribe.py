"""The unsubscribe link of a marketing email, followed as a mail client follows it (RFC 8058, decision
024), on the local stack: the email SES (moto) accepted carries `List-Unsubscribe` and
`List-Unsubscribe-Post`; POSTing the latter's body to the former's HTTPS URL, with no login, opts the
person out, which the app's `GET /v1/me/preferences` shows and the next promotion respects."""

from __future__ import annotations

import re
import urllib.error
import urllib.request
from email.parser import HeaderParser
from email.policy import compat32
from typing import Any

import pytest

from herald.catalog import load_catalog
from herald.stores.dynamo import from_attributes
from local.app_client import AppClient
from local.http_api import is_loopback_url
from local.stack import LocalStack
from tests.e2e.conftest import emails_to, put_bus_event, put_event, wait_until

pytestmark = pytest.mark.e2e

TIMEOUT = 60.0
USER = "e2e-unsub"
ADDRESS = "e2e-unsub@example.com"


def promotion(event_id: str) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "type": "marketing_promo",
        "user_id": USER,
        "data": dict(load_catalog().types["marketing_promo"].sample_data),
    }


def notification(stack: LocalStack, event_id: str) -> dict[str, Any] | None:
    assert stack.description
    items = stack.client("dynamodb").query(
        TableName=stack.description.ref("NotificationsTable"),
        KeyConditionExpression="user_id = :u",
        ExpressionAttributeValues={":u": {"S": USER}},
        ConsistentRead=True,
    )["Items"]
    return next((r for r in map(from_attributes, items) if r.get("event_id") == event_id), None)


def one_click(url: str, post_header: str) -> tuple[int, bytes]:
    """What a mail client does (RFC 8058 §3.1): POST the `List-Unsubscribe-Post` value as the form body
    to the HTTPS URL of `List-Unsubscribe`, with no cookies or credentials."""
    request = urllib.request.Request(
        url,
        data=post_header.encode(),
        method="POST",
        headers={"Content-Type": "application/x-www-form-urlencoded", "User-Agent": "e2e-mail-client"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # loopback: checked below
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def test_the_unsubscribe_link_of_a_marketing_email_opts_the_person_out(stack: LocalStack) -> None:
    assert stack.api and stack.sandbox
    app = AppClient(stack.api.url, stack.sandbox.url)

    # GIVEN a person the directory knows, who opted in to marketing in the app
    put_bus_event(stack, "UserUpserted", {"user_id": USER, "version": 1, "email": ADDRESS})
    assert wait_until(
        lambda: (app.get("/v1/me/export", user=USER).body.get("directory") or {}).get("version")
    )
    assert app.put("/v1/me/preferences", user=USER, json_body={"marketing_opt_in": True}).ok

    # WHEN a promotion is mailed to them
    put_event(stack, promotion("e2e-unsub-1"))
    sent = wait_until(lambda: emails_to(stack, ADDRESS), TIMEOUT)
    assert len(sent) == 1, sent

    # THEN its raw message carries the one-click headers ...
    headers = HeaderParser(policy=compat32).parsestr(sent[0]["raw_data"], headersonly=True)
    post = headers["List-Unsubscribe-Post"]
    assert post == "List-Unsubscribe=One-Click"
    urls = re.findall(r"<([^>]+)>", headers["List-Unsubscribe"])
    https = [u for u in urls if u.startswith(("https://", "http://"))]
    assert https and "/v1/unsubscribe?token=" in https[0], headers["List-Unsubscribe"]
    assert is_loopback_url(https[0])  # the local API (the execute-api URL, rewritten for the stack)

    # WHEN the person's mail client follows it as RFC 8058 says
    status, _ = one_click(https[0], post)

    # THEN it is done, the app shows marketing off ...
    assert status == 200
    assert app.get("/v1/me/preferences", user=USER).body["marketing_opt_in"] is False

    # ... and the next promotion is not sent: the router skips it for want of the opt-in
    put_event(stack, promotion("e2e-unsub-2"))
    second = wait_until(lambda: notification(stack, "e2e-unsub-2"), TIMEOUT)
    assert second is not None
    blocked = [s for s in second["decision"] if (s["rule"], s["verdict"]) == ("preferences", "block")]
    assert blocked and "marketing" in blocked[0]["reason"], second["decision"]
    assert "email" not in (second.get("deliveries") or {})
    assert len(emails_to(stack, ADDRESS)) == 1
