"""Presence on the local stack, from Pusher's own signed webhooks: the Pusher sandbox tells the HTTP
API when a person's `private-user-<id>` channel is occupied or vacated (as Pusher does, to the
webhook URL configured for the app), and routing follows it. Nothing writes presence directly."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest

from local.app_client import AppClient
from local.stack import LocalStack
from tests.e2e.conftest import emails_to, http_json, outbox, put_bus_event, put_event, wait_until

pytestmark = pytest.mark.e2e

REPLY = {"author": "Ana", "excerpt": "Agreed", "thread_url": "https://app.example.com/t/9"}


def presence_of(stack: LocalStack, user_id: str) -> dict | None:
    assert stack.api and stack.sandbox
    app = AppClient(stack.api.url, stack.sandbox.url)
    return app.get("/v1/me/export", user=user_id).body["presence"]


def exported(app: AppClient, user_id: str) -> dict:
    return app.get("/v1/me/export", user=user_id).body


def test_an_occupied_channel_means_realtime_only_and_a_vacated_one_push_again(stack: LocalStack) -> None:
    assert stack.sandbox and stack.api
    put_bus_event(stack, "UserUpserted", {"user_id": "pres-1", "version": 1, "email": "pres-1@example.com"})
    app = AppClient(stack.api.url, stack.sandbox.url)
    token = "pres-1-phone-" + "p" * 100
    assert app.put(f"/v1/me/devices/{token}", user="pres-1", json_body={"platform": "ios"}).status == 200
    assert wait_until(
        lambda: (app.get("/v1/me/export", user="pres-1").body.get("directory") or {}).get("version")
    )

    # WHEN the person's app subscribes to their channel THEN Pusher's signed webhook marks them online
    occupied = http_json(
        f"{stack.sandbox.url}/_pusher/occupy", method="POST", body={"channel": "private-user-pres-1"}
    )
    assert occupied["webhook"]["status"] == 200
    assert (presence_of(stack, "pres-1") or {}).get("occupied") is True
    put_event(stack, {"event_id": "pres-e1", "type": "comment_reply", "user_id": "pres-1", "data": REPLY})
    assert wait_until(lambda: outbox(stack, provider="pusher", recipient="private-user-pres-1"))
    (routed,) = [n for n in exported(app, "pres-1")["notifications"] if n["event_id"] == "pres-e1"]
    assert [step["channel"] for step in routed["plan"]] == ["realtime"]
    assert set(routed["deliveries"]) == {"realtime"}
    assert outbox(stack, provider="fcm", recipient=token) == []
    assert emails_to(stack, "pres-1@example.com") == []

    # WHEN the app leaves THEN the next notification is pushed
    http_json(f"{stack.sandbox.url}/_pusher/vacate", method="POST", body={"channel": "private-user-pres-1"})
    assert (presence_of(stack, "pres-1") or {}).get("occupied") is False
    put_event(stack, {"event_id": "pres-e2", "type": "comment_reply", "user_id": "pres-1", "data": REPLY})
    assert wait_until(lambda: outbox(stack, provider="fcm", recipient=token))


def test_a_forged_webhook_is_refused_and_changes_nothing(stack: LocalStack) -> None:
    assert stack.api
    body = json.dumps(
        {"time_ms": 1, "events": [{"name": "channel_occupied", "channel": "private-user-pres-2"}]}
    ).encode()
    request = urllib.request.Request(
        f"{stack.api.url}/v1/webhooks/pusher",
        data=body,
        method="POST",
        headers={"Content-Type": "application/json", "X-Pusher-Key": "k", "X-Pusher-Signature": "0" * 64},
    )
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)
    assert refused.value.code == 401
    assert presence_of(stack, "pres-2") is None


def post_webhook(stack: LocalStack, body: bytes, headers: dict[str, str]) -> tuple[int, dict]:
    assert stack.api
    request = urllib.request.Request(
        f"{stack.api.url}/v1/webhooks/pusher", data=body, method="POST", headers=headers
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def signed(stack: LocalStack, time_ms: int, events: list[dict]) -> tuple[bytes, dict[str, str]]:
    """A body signed with the app's secret, as Pusher signs it, at a chosen `time_ms`."""
    assert stack.sandbox
    credentials = stack.sandbox.credentials.pusher
    body = json.dumps({"time_ms": time_ms, "events": events}).encode()
    signature = hmac.new(credentials.secret.encode(), body, hashlib.sha256).hexdigest()
    return body, {
        "Content-Type": "application/json",
        "X-Pusher-Key": credentials.key,
        "X-Pusher-Signature": signature,
    }


def test_a_replayed_webhook_changes_nothing_and_a_stale_one_is_refused(stack: LocalStack) -> None:
    assert stack.sandbox
    http_json(f"{stack.sandbox.url}/_pusher/occupy", method="POST", body={"channel": "private-user-pres-3"})
    occupied = stack.sandbox.pusher.webhooks_sent()[-1]
    http_json(f"{stack.sandbox.url}/_pusher/vacate", method="POST", body={"channel": "private-user-pres-3"})
    assert (presence_of(stack, "pres-3") or {}).get("occupied") is False

    # the captured "occupied" webhook, replayed byte for byte after the newer "vacated"
    status, answer = post_webhook(stack, occupied.request_body.encode(), occupied.request_headers)
    assert (status, answer["applied"]) == (200, 0)
    assert (presence_of(stack, "pres-3") or {}).get("occupied") is False

    stale = int(time.time() * 1000) - 6 * 60 * 1000
    status, answer = post_webhook(
        stack, *signed(stack, stale, [{"name": "channel_occupied", "channel": "private-user-pres-3"}])
    )
    assert status == 401 and answer["error"]["code"] == "unauthorized"
    assert (presence_of(stack, "pres-3") or {}).get("occupied") is False


def test_webhooks_delivered_out_of_order_end_in_the_newest_state(stack: LocalStack) -> None:
    now = int(time.time() * 1000)
    newer = signed(stack, now, [{"name": "channel_vacated", "channel": "private-user-pres-4"}])
    older = signed(stack, now - 2000, [{"name": "channel_occupied", "channel": "private-user-pres-4"}])

    assert post_webhook(stack, *newer)[0] == 200
    assert post_webhook(stack, *older)[0] == 200

    assert (presence_of(stack, "pres-4") or {}).get("occupied") is False


def test_one_person_cannot_authorize_anothers_channel(stack: LocalStack) -> None:
    assert stack.api and stack.sandbox
    app = AppClient(stack.api.url, stack.sandbox.url)

    def authorize(user: str, channel: str) -> int:
        form = urllib.parse.urlencode({"socket_id": "1234.5678", "channel_name": channel}).encode()
        request = urllib.request.Request(
            f"{stack.api.url}/v1/pusher/auth",
            data=form,
            method="POST",
            headers={
                "Authorization": f"Bearer {app.token(user)}",
                "Content-Type": "application/x-www-form-urlencoded",
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status
        except urllib.error.HTTPError as error:
            return error.code

    assert authorize("pres-a", "private-user-pres-a") == 200
    assert authorize("pres-a", "private-user-pres-b") == 403
    assert authorize("pres-a", "presence-user-pres-b") == 403


def test_an_app_connecting_and_leaving_moves_presence_as_pusher_reports_it(stack: LocalStack) -> None:
    """The sandbox as the person's app: connect → Pusher's batched `channel_occupied`; the last
    disconnect → `channel_vacated` a few seconds later, as Pusher delays it."""
    assert stack.sandbox
    http_json(f"{stack.sandbox.url}/_pusher/connect", method="POST", body={"user_id": "pres-5"})
    assert wait_until(lambda: (presence_of(stack, "pres-5") or {}).get("occupied") is True, timeout=10)

    left = http_json(f"{stack.sandbox.url}/_pusher/disconnect", method="POST", body={"user_id": "pres-5"})
    assert left["vacated_in_ms"] > 0
    assert (presence_of(stack, "pres-5") or {}).get("occupied") is True  # not yet: Pusher waits
    assert wait_until(lambda: (presence_of(stack, "pres-5") or {}).get("occupied") is False, timeout=15)
