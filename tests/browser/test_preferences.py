"""`<herald-preferences>` in a real browser on the local stack (issue 14 items 1 and 4): a change made
in the preference centre persists (a reload shows it), changes the next routing decision, and the
SMS marketing consent records the wording version shown. axe-core finds no serious or critical
violation. Nothing leaves 127.0.0.0/8."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from playwright.sync_api import Page, expect

from local.stack import LocalStack
from tests.browser.conftest import Artefacts, axe_violations, demo_status
from tests.browser.test_demo_page import REPLY
from tests.browser.test_inbox import app
from tests.e2e.conftest import outbox, put_event, wait_until

pytestmark = pytest.mark.browser

USER = "ana"  # a seeded demo user: one device (`ana-phone`), an email address and a phone
DEVICE = "ana-phone"
ZONE = "America/Sao_Paulo"
QUIET = "Hold push and text messages during quiet hours"
WORDING_VERSION = "sms-terms-3"  # what the demo page shows (web/demo/index.html)


def sign_in(page: Page, stack: LocalStack) -> None:
    assert stack.sandbox
    page.goto(f"{stack.sandbox.url}/demo/")
    page.get_by_label("Demo user").select_option(USER)
    page.get_by_role("button", name="Sign in").click()
    signed_in = f"Signed in as {USER}: live on private-user-{USER}."
    expect(demo_status(page)).to_have_text(signed_in)
    expect(page.get_by_role("button", name="Save settings")).to_be_visible()


def routed(stack: LocalStack, event_id: str) -> dict[str, Any] | None:
    """The person's notification for `event_id` once it has a delivery log (from their export)."""
    exported = app(stack).get("/v1/me/export", user=USER).body
    found = [n for n in exported["notifications"] if n["event_id"] == event_id]
    return found[0] if found and found[0].get("deliveries") else None


def channels_of(notification: dict[str, Any]) -> list[str]:
    return [step["channel"] for step in notification["plan"]]


def test_a_preference_change_persists_and_changes_the_next_routing_decision(
    stack: LocalStack, page: Page, artefacts: Artefacts
) -> None:

    # GIVEN the person signed in on the demo app: online, so a reply reaches them in the app
    sign_in(page, stack)
    put_event(stack, {"event_id": "prefs-e1", "type": "comment_reply", "user_id": USER, "data": REPLY})
    before = wait_until(lambda: routed(stack, "prefs-e1"), timeout=20)
    assert before is not None and channels_of(before) == ["realtime"]

    # THEN the preference centre shows what Herald holds; security and system cannot be turned off
    in_app = page.get_by_role("checkbox", name="In-app", exact=True)
    expect(in_app).to_be_checked()
    expect(page.get_by_role("checkbox", name="Security")).to_be_disabled()
    expect(page.get_by_role("checkbox", name="Service messages")).to_be_disabled()
    expect(page.get_by_role("checkbox", name="Receive Account activity")).to_be_enabled()
    artefacts.screenshot(page, "preferences-loaded")

    # WHEN they turn in-app off, set quiet hours (not now) in another time zone, opt in to marketing
    # and agree to marketing texts under the wording shown, then save
    local_now = datetime.now(ZoneInfo(ZONE))
    start = (local_now + timedelta(hours=3)).strftime("%H:%M")
    end = (local_now + timedelta(hours=4)).strftime("%H:%M")
    in_app.uncheck()
    in_app_column = page.get_by_role("row", name="Account activity").get_by_role("cell").nth(3)
    expect(in_app_column).to_have_text("Off")  # the matrix follows before saving
    email_for_activity = page.get_by_role("checkbox", name="Email for Account activity")
    expect(email_for_activity).to_be_checked()  # one cell of the matrix: email, for this category only
    email_for_activity.uncheck()
    expect(page.get_by_role("row", name="Account activity").get_by_role("cell").nth(0)).to_have_text("Off")
    expect(page.get_by_role("row", name="Security").get_by_role("cell").nth(0)).to_have_text("On")
    page.get_by_role("checkbox", name=QUIET).check()
    page.get_by_label("From", exact=True).fill(start)
    page.get_by_label("To", exact=True).fill(end)
    page.get_by_label("Time zone").select_option(ZONE)
    page.get_by_role("checkbox", name="Send me news and offers").check()
    expect(page.get_by_text(f"Consent wording version {WORDING_VERSION}")).to_be_visible()
    page.get_by_role("checkbox", name="I agree to receive marketing text messages").check()
    page.get_by_role("button", name="Save settings").click()
    expect(page.get_by_text("Settings saved.")).to_be_visible()

    # THEN Herald holds them
    held = app(stack).get("/v1/me/preferences", user=USER).body
    assert held["channels"] == {"email": True, "push": True, "sms": True, "realtime": False}
    assert held["quiet_hours"] == {"start": f"{start}:00", "end": f"{end}:00"}
    assert held["time_zone"] == ZONE and held["marketing_opt_in"] is True
    assert held["muted_channels"] == {"transactional": ["email"]}
    exported = app(stack).get("/v1/me/export", user=USER).body
    (consent,) = exported["consents"]
    assert consent["granted"] is True and consent["wording_version"] == WORDING_VERSION
    artefacts.screenshot(page, "preferences-saved")

    # WHEN the page is reloaded and the person signs in again
    page.reload()
    sign_in(page, stack)

    # THEN the preference centre shows what they chose, and the consent recorded with its version
    expect(page.get_by_role("checkbox", name="In-app", exact=True)).not_to_be_checked()
    expect(page.get_by_role("checkbox", name="Push", exact=True)).to_be_checked()
    expect(page.get_by_role("checkbox", name=QUIET)).to_be_checked()
    expect(page.get_by_label("From", exact=True)).to_have_value(start)
    expect(page.get_by_label("To", exact=True)).to_have_value(end)
    expect(page.get_by_label("Time zone")).to_have_value(ZONE)
    expect(page.get_by_role("checkbox", name="Send me news and offers")).to_be_checked()
    expect(page.get_by_role("checkbox", name="I agree to receive marketing text messages")).to_be_checked()
    expect(page.get_by_text(f"Recorded: you agreed to version {WORDING_VERSION} on ")).to_be_visible()
    expect(page.get_by_role("row", name="Account activity").get_by_role("cell").nth(3)).to_have_text("Off")
    expect(page.get_by_role("checkbox", name="Email for Account activity")).not_to_be_checked()
    expect(page.get_by_role("checkbox", name="Push for Account activity")).to_be_checked()
    artefacts.screenshot(page, "preferences-after-reload")

    # AND axe-core finds no serious or critical violation in the preference centre
    violations = axe_violations(page, "herald-preferences")
    artefacts.note("axe-preferences", violations)
    assert violations == []

    # WHEN the next reply comes while they are online
    put_event(stack, {"event_id": "prefs-e2", "type": "comment_reply", "user_id": USER, "data": REPLY})

    # THEN the router no longer uses the app (turned off): it goes by push to their device
    after = wait_until(lambda: routed(stack, "prefs-e2"), timeout=20)
    assert after is not None
    assert "realtime" not in channels_of(after) and "push" in channels_of(after)
    assert wait_until(lambda: outbox(stack, provider="fcm", recipient=DEVICE), timeout=20)
    artefacts.note("routed-after-change", {"before": before, "after": after})

    # WHEN the app speaks Brazilian Portuguese; THEN so does the preference centre
    page.evaluate("document.querySelector('herald-preferences').locale = 'pt-BR'")
    expect(page.get_by_role("button", name="Salvar configurações")).to_be_visible()
    expect(page.get_by_role("checkbox", name="Segurança")).to_be_disabled()
