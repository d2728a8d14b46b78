"""A person joins the local stack from a real browser: the demo app page in chromium, the real
pusher-js on the Pusher sandbox's WebSocket side, the channel authorized by Herald, presence from
the sandbox's signed occupancy webhooks, and routing that follows it (realtime while the page is
open, push once it is closed). Nothing leaves 127.0.0.0/8."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from local.app_client import AppClient
from local.stack import LocalStack
from tests.browser.conftest import Artefacts, demo_status
from tests.browser.test_console import sign_in_operator
from tests.e2e.conftest import outbox, put_event, wait_until

pytestmark = pytest.mark.browser

USER = "ana"  # a seeded demo user with one device, `ana-phone`
DEVICE = "ana-phone"
CHANNEL = f"private-user-{USER}"
REPLY = {"author": "Ben", "excerpt": "Looks good to me", "thread_url": "https://app.example.com/t/7"}


def presence(stack: LocalStack) -> dict[str, Any]:
    assert stack.api and stack.sandbox
    exported = AppClient(stack.api.url, stack.sandbox.url).get("/v1/me/export", user=USER).body
    return exported.get("presence") or {}


def routed(stack: LocalStack, event_id: str) -> dict[str, Any] | None:
    assert stack.api and stack.sandbox
    exported = AppClient(stack.api.url, stack.sandbox.url).get("/v1/me/export", user=USER).body
    found = [n for n in exported["notifications"] if n["event_id"] == event_id]
    return found[0] if found and found[0].get("deliveries") else None


def occupancy_webhooks(stack: LocalStack, name: str) -> list[Any]:
    assert stack.sandbox
    return [
        delivery
        for delivery in stack.sandbox.pusher.webhooks_sent()
        if {"name": name, "channel": CHANNEL} in json.loads(delivery.request_body)["events"]
    ]


def test_a_browser_signs_in_goes_live_gets_a_notification_then_leaves_and_gets_push(
    stack: LocalStack, page: Page, artefacts: Artefacts
) -> None:
    assert stack.sandbox and stack.api
    sockets: list[str] = []
    auth_statuses: list[int] = []

    page.on("websocket", lambda socket: sockets.append(socket.url))
    page.on(
        "response",
        lambda response: (
            auth_statuses.append(response.status)
            if response.url.endswith("/v1/pusher/auth") and response.request.method == "POST"
            else None
        ),
    )

    # GIVEN the demo app page of `make local`, signed out
    page.goto(f"{stack.sandbox.url}/demo/")
    expect(demo_status(page)).to_have_text("Signed out.")
    expect(page.get_by_label("Demo user")).to_contain_text(USER)
    artefacts.screenshot(page, "signed-out")

    # WHEN the person signs in as a demo user
    page.get_by_label("Demo user").select_option(USER)
    page.get_by_role("button", name="Sign in").click()

    # THEN pusher-js connects, Herald authorizes the channel, the sandbox accepts the subscription ...
    expect(demo_status(page)).to_have_text(f"Signed in as {USER}: live on {CHANNEL}.")
    assert auth_statuses == [200]
    assert sockets == [
        f"{stack.sandbox.pusher_ws.url}/app/{stack.sandbox.credentials.pusher.key}"
        "?protocol=7&client=js&version=8.6.0&flash=false"
    ]
    assert list(stack.sandbox.pusher_ws.sockets().values()) == [[CHANNEL]]
    # ... and Pusher's signed channel_occupied webhook reaches Herald: the person is online
    assert wait_until(lambda: presence(stack).get("occupied") is True, timeout=10)
    (occupied,) = occupancy_webhooks(stack, "channel_occupied")
    assert occupied.status == 200
    artefacts.screenshot(page, "online")
    artefacts.note("online-presence", {"presence": presence(stack), "webhook": occupied.to_dict()})

    # WHEN a medium-urgency notification is put on the bus for them
    page.evaluate("window.notReloaded = true")
    put_event(stack, {"event_id": "browser-e1", "type": "comment_reply", "user_id": USER, "data": REPLY})

    # THEN it appears on the open page without a reload (in the bell's inbox), sent by realtime only
    page.get_by_role("button", name=re.compile(r"^Notifications")).click()
    item = page.get_by_role("listitem")
    expect(item).to_have_count(1, timeout=20_000)
    expect(item).to_contain_text("Ben replied to your comment")
    assert page.evaluate("window.notReloaded") is True
    first = wait_until(lambda: routed(stack, "browser-e1"), timeout=10)
    assert first is not None
    assert [step["channel"] for step in first["plan"]] == ["realtime"]
    assert item.get_attribute("data-notification-id") == first["notification_id"]
    (triggered,) = outbox(stack, provider="pusher", recipient=CHANNEL)
    assert triggered["sockets"] == 1
    assert outbox(stack, provider="fcm", recipient=DEVICE) == []
    artefacts.screenshot(page, "notification-live")

    # WHEN the person closes the page
    page.close()

    # THEN the socket closes, channel_vacated (after Pusher's delay) makes the person offline ...
    assert wait_until(lambda: presence(stack).get("occupied") is False, timeout=15)
    (vacated,) = occupancy_webhooks(stack, "channel_vacated")
    assert vacated.status == 200
    assert stack.sandbox.pusher_ws.sockets() == {}
    artefacts.note("page-closed-presence", {"presence": presence(stack), "webhook": vacated.to_dict()})

    # ... and the next notification goes by push to their device, not to the vacant channel
    put_event(stack, {"event_id": "browser-e2", "type": "comment_reply", "user_id": USER, "data": REPLY})
    pushed = wait_until(lambda: outbox(stack, provider="fcm", recipient=DEVICE), timeout=20)
    assert len(pushed) == 1
    second = wait_until(lambda: routed(stack, "browser-e2"), timeout=10)
    assert second is not None and "push" in second["deliveries"]
    assert len(outbox(stack, provider="pusher", recipient=CHANNEL)) == 1  # no second trigger
    artefacts.note("pushed", {"routed": second, "fcm": pushed[0]})

    # WHEN support opens the operator console and looks up that notification of the person's
    console = sign_in_operator(page.context.new_page(), stack)
    console.get_by_label("Person (user id)").fill(USER)
    console.get_by_role("button", name="Show notifications").click()
    console.get_by_role("button", name=f"Show the trace of comment_reply {second['notification_id']}").click()

    # THEN its decision trace shows why it went by push: presence found the person offline
    trace = console.get_by_role("article", name=f"Trace of {second['notification_id']}")
    decision = trace.get_by_role("table", name="Decision, rule by rule").get_by_role("row")
    offline = re.compile(r"skip\s+presence\s+realtime\s+offline: no in-app realtime")
    expect(decision.filter(has_text="presence")).to_contain_text(offline)
    outcomes = trace.get_by_role("table", name="Each channel's outcome").get_by_role("row")
    expect(outcomes.filter(has_text="push")).to_contain_text(re.compile(r"push\s+sent\s+fcm"), timeout=10_000)
    artefacts.screenshot(console.page, "console-trace")
