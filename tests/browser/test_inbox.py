"""`<herald-inbox>` in a real browser on the local stack (issue 14 items 1 and 4): the demo app page
embeds it; the bell shows the exact unseen count, the list pages with the API's cursor, a
notification put on the bus appears without a reload, and opening a high-urgency one reads and
acknowledges it: its escalation stops (no email after the delay) while an unopened one's goes on.
axe-core finds no serious or critical violation. Nothing leaves 127.0.0.0/8."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from playwright.sync_api import Page, Request, expect

from herald.catalog import load_catalog
from local.app_client import AppClient
from local.stack import LocalStack
from tests.browser.conftest import FALLBACK_DELAY_SECONDS, Artefacts, axe_violations, demo_status
from tests.e2e.conftest import emails_to, put_event, wait_until

pytestmark = pytest.mark.browser

USER = "ben"  # a seeded demo user: one device (`ben-phone`), an email address, no preferences set
EMAIL = "ben+success@"
OPENED = "Corner Bakery"  # the payment the person opens in the inbox
IGNORED = "Book Shop"  # the payment nobody opens: its escalation must go on to email
BELL = re.compile(r"^Notifica")  # Notifications, Notificaciones, Notificações


def app(stack: LocalStack) -> AppClient:
    assert stack.api and stack.sandbox
    return AppClient(stack.api.url, stack.sandbox.url)


def counts(stack: LocalStack) -> dict[str, int]:
    return app(stack).get("/v1/me/notifications/count", user=USER).body


def inbox_items(stack: LocalStack) -> list[dict[str, Any]]:
    return app(stack).get("/v1/me/notifications?limit=100", user=USER).body["items"]


def reply(event_id: str, author: str) -> dict[str, Any]:
    data = {"author": author, "excerpt": f"A word from {author}", "thread_url": "https://app.example.com/t/1"}
    return {"event_id": event_id, "type": "comment_reply", "user_id": USER, "data": data}


def payment(event_id: str, merchant: str) -> dict[str, Any]:
    data = {**load_catalog().entry("payment_receipt").sample_data, "merchant": merchant}
    return {"event_id": event_id, "type": "payment_receipt", "user_id": USER, "data": data}


def emails_about(stack: LocalStack, merchant: str) -> list[dict[str, Any]]:
    return [m for m in emails_to(stack, EMAIL) if f"Your receipt from {merchant}" in json.dumps(m)]


def test_the_inbox_counts_pages_goes_live_and_opening_a_notification_stops_its_escalation(
    stack: LocalStack, page: Page, artefacts: Artefacts
) -> None:
    assert stack.sandbox
    pages_read: list[str] = []

    def note_page(request: Request) -> None:
        if "/v1/me/notifications?" in request.url:
            pages_read.append(request.url)

    page.on("request", note_page)

    # GIVEN three replies that reached the person while they were away (by push)
    for number, author in enumerate(("Ada", "Bo", "Cy")):
        put_event(stack, reply(f"inbox-r{number}", author))
    assert wait_until(lambda: counts(stack)["unseen"] == 3, timeout=20)

    # WHEN they sign in on the demo app, whose inbox reads two items a page
    page.goto(f"{stack.sandbox.url}/demo/")
    page.evaluate("document.querySelector('herald-inbox').pageSize = 2")
    page.get_by_label("Demo user").select_option(USER)
    page.get_by_role("button", name="Sign in").click()
    expect(demo_status(page)).to_have_text(f"Signed in as {USER}: live on private-user-{USER}.")

    # THEN the bell shows the exact unseen count, named for screen readers
    bell = page.get_by_role("button", name=BELL)
    expect(bell).to_have_accessible_name("Notifications, 3 unseen")
    expect(page.locator("herald-inbox .badge")).to_have_text("3")
    expect(bell).to_have_attribute("aria-expanded", "false")
    artefacts.screenshot(page, "bell-unseen-count")

    # WHEN the bell is opened from the keyboard
    bell.focus()
    page.keyboard.press("Enter")

    # THEN the list shows every item, newest first: the second page read with the API's cursor
    expect(bell).to_have_attribute("aria-expanded", "true")
    items = page.get_by_role("list", name="Notification list").get_by_role("listitem")
    expect(items).to_have_count(3)
    expect(items.nth(0)).to_contain_text("Cy replied to your comment")
    expect(items.nth(2)).to_contain_text("Ada replied to your comment")
    assert len(pages_read) == 2 and "cursor=" not in pages_read[0] and "cursor=" in pages_read[1]
    artefacts.screenshot(page, "list-two-pages")

    # WHEN two payments (high urgency: push, then email unless acknowledged) are put on the bus
    page.evaluate("window.notReloaded = true")
    put_event(stack, payment("inbox-p1", OPENED))
    put_event(stack, payment("inbox-p2", IGNORED))

    # THEN both appear without a reload, are announced, and the count follows
    expect(items).to_have_count(5, timeout=20_000)
    expect(items.filter(has_text=f"Payment to {OPENED}")).to_have_count(1)
    expect(items.filter(has_text=f"Payment to {IGNORED}")).to_have_count(1)
    announced = page.locator("herald-inbox [aria-live]")
    expect(announced).to_have_text(re.compile(r"^New notification: Payment to "))
    expect(bell).to_have_accessible_name("Notifications, 5 unseen")
    assert page.evaluate("window.notReloaded") is True
    artefacts.screenshot(page, "payments-live")

    # WHEN the person opens one of them
    opened = items.filter(has_text=f"Payment to {OPENED}")
    opened.locator("button.open").click()

    # THEN it is read (and so acknowledged), shown whole, and the count drops
    expect(opened.get_by_role("img", name="Unread")).to_have_count(0)
    expect(opened.locator("button.open")).to_have_attribute("aria-expanded", "true")
    expect(bell).to_have_accessible_name("Notifications, 4 unseen")
    by_title = {item["render"]["title"]: item for item in inbox_items(stack)}
    assert by_title[f"Payment to {OPENED}"]["read_at"] and by_title[f"Payment to {OPENED}"]["acked_at"]
    assert by_title[f"Payment to {IGNORED}"]["acked_at"] is None
    assert counts(stack) == {"unread": 4, "unseen": 4}
    artefacts.screenshot(page, "opened-read")

    # WHEN one reply is marked read and another archived, with their labelled buttons
    page.get_by_role("button", name="Mark read: Ada replied to your comment").click()
    expect(bell).to_have_accessible_name("Notifications, 3 unseen")
    page.get_by_role("button", name="Archive: Bo replied to your comment").click()

    # THEN the archived one leaves the list and the counts
    expect(items).to_have_count(4)
    expect(items.filter(has_text="Bo replied")).to_have_count(0)
    expect(bell).to_have_accessible_name("Notifications, 2 unseen")
    assert counts(stack) == {"unread": 2, "unseen": 2}

    # AND axe-core finds no serious or critical violation in the open inbox
    violations = axe_violations(page, "herald-inbox")
    artefacts.note("axe-inbox", violations)
    assert violations == []

    # WHEN the fallback delay passes
    # THEN the unopened payment's escalation sends its email, and the opened one's sends none
    assert wait_until(lambda: emails_about(stack, IGNORED), timeout=FALLBACK_DELAY_SECONDS + 30)
    assert wait_until(lambda: emails_about(stack, OPENED), timeout=5) == []
    assert len(emails_about(stack, IGNORED)) == 1
    artefacts.note("emails-after-delay", {"sent": emails_to(stack, EMAIL)})

    # WHEN everything is marked read; THEN the badge goes and nothing is unread
    page.get_by_role("button", name="Mark all read").click()
    expect(bell).to_have_accessible_name("Notifications")
    expect(page.locator("herald-inbox .badge")).to_have_count(0)
    expect(page.get_by_role("img", name="Unread")).to_have_count(0)
    expect(page.get_by_role("button", name="Mark all read")).to_have_attribute("aria-disabled", "true")
    assert counts(stack) == {"unread": 0, "unseen": 0}
    artefacts.screenshot(page, "all-read")

    # AND Escape closes the list and gives the focus back to the bell
    page.keyboard.press("Escape")
    expect(bell).to_have_attribute("aria-expanded", "false")
    expect(bell).to_be_focused()
    page.keyboard.press("Enter")

    # WHEN the app speaks Spanish, then European Portuguese (the templates' locales, by language)
    page.evaluate("document.querySelector('herald-inbox').locale = 'es'")
    # THEN the inbox speaks it too
    expect(bell).to_have_accessible_name("Notificaciones")
    expect(page.get_by_role("button", name="Marcar todo como leído")).to_be_visible()
    page.evaluate("document.querySelector('herald-inbox').locale = 'pt-PT'")
    expect(page.get_by_role("button", name="Notificações")).to_be_visible()
    expect(page.get_by_role("list", name="Lista de notificações")).to_be_visible()
