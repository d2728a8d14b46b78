"""The operator console in a real browser on the local stack (issue 14 items 2 and 4): an operator
signs in with an admin-scoped token from the local issuer; `<herald-console>` shows who is online
(a demo user's open page, gone when it closes), a person's notifications live with each one's
decision trace and delivery log (what the operator API, and so `herald trace`, says), and the
suppression list, whose Lift asks for a reason and, for the person's own STOP, for `force`.
axe-core finds no serious or critical violation. Nothing leaves 127.0.0.0/8."""

from __future__ import annotations

import re
from typing import Any

import pytest
from playwright.sync_api import APIResponse, Locator, Page, Route, expect

from herald.stores.keys import email_address, sms_address
from herald.stores.suppression import SuppressionStore
from local.app_client import AppClient
from local.stack import LocalStack
from tests.browser.conftest import Artefacts, axe_violations, demo_status
from tests.e2e.conftest import put_event, wait_until

pytestmark = pytest.mark.browser

OPERATOR = "ops-demo"  # the operator the console's sign-in offers (local/sandboxes/demo_page.py)
SCOPE = "openid herald/admin"
REPLY = {"author": "Ada", "excerpt": "Shipped it", "thread_url": "https://app.example.com/t/9"}
CORS = {"access-control-allow-origin": "*"}  # the API is another origin than the console's page
BAD_GATEWAY = "<html><body><h1>502 Bad Gateway</h1></body></html>"  # a proxy's page, not JSON


def operator_api(stack: LocalStack, method: str, path: str, **kwargs: Any) -> Any:
    """Herald's operator API as the console reads it, with an admin-scoped token."""
    assert stack.api and stack.sandbox
    token = stack.sandbox.issuer.token(OPERATOR, scope=SCOPE)
    client = AppClient(stack.api.url, stack.sandbox.url)
    answer = client.request(method, path, user=None, token=token, **kwargs)
    assert answer.ok, answer
    return answer.body


def suppressed(stack: LocalStack) -> list[str]:
    """The contacts on the suppression list, as the operator API reads it (sorted)."""
    return sorted(e["contact"] for e in operator_api(stack, "GET", "/v1/admin/suppressions")["entries"])


def sign_in_operator(page: Page, stack: LocalStack) -> Locator:
    """Opens the console, signs in as the demo operator; the console element."""
    assert stack.sandbox
    page.goto(f"{stack.sandbox.url}/console/")
    expect(page.get_by_label("Operator id")).to_have_value(OPERATOR)
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("#status")).to_have_text(f"Signed in as operator {OPERATOR} (scope herald/admin).")
    console = page.locator("herald-console")
    expect(console.get_by_role("heading", name="Who is online")).to_be_visible()
    return console


def announced(console: Locator) -> Locator:
    return console.get_by_role("status", name="Console messages")


def bad_gateway(route: Route) -> None:
    """What a proxy in front of Herald answers when Herald is gone: HTML, not Herald's JSON."""
    route.fulfill(status=502, content_type="text/html", headers=CORS, body=BAD_GATEWAY)


def held_back(page: Page, held: list[Any]) -> None:
    """Lets the page run until the route handler has held a request back (`held` not empty)."""
    for _ in range(400):
        if held:
            return
        page.wait_for_timeout(25)  # Playwright calls the route handlers while the page runs
    pytest.fail("no request was held back")


def settled(console: Locator) -> None:
    """Waits two frames and the console's render: an answer the page received has been taken."""
    console.evaluate(
        """async (element) => {
            await new Promise((done) => requestAnimationFrame(() => requestAnimationFrame(done)));
            await element.updateComplete;
        }"""
    )


def cells(row: Locator) -> list[str]:
    return [text.strip() for text in row.locator("th, td").all_inner_texts()]


def open_demo_app(page: Page, stack: LocalStack, user: str) -> Page:
    """Another page of the same browser: the demo app, signed in as `user` (live on Pusher)."""
    assert stack.sandbox
    app_page = page.context.new_page()
    app_page.goto(f"{stack.sandbox.url}/demo/")
    app_page.get_by_label("Demo user").select_option(user)
    app_page.get_by_role("button", name="Sign in").click()
    expect(demo_status(app_page)).to_have_text(f"Signed in as {user}: live on private-user-{user}.")
    return app_page


def test_who_is_online_follows_the_demo_users_open_pages(
    stack: LocalStack, page: Page, artefacts: Artefacts
) -> None:
    # GIVEN the operator signed in on the console, and nobody online
    console = sign_in_operator(page, stack)
    online = console.locator("section.online")
    expect(online).to_contain_text("Nobody is online.")
    artefacts.screenshot(page, "nobody-online")

    # WHEN a demo user signs in on the demo app, in another page of the same browser
    cleo_page = open_demo_app(page, stack, "cleo")

    # THEN the console lists them, without a reload, and says so
    page.evaluate("window.notReloaded = true")
    rows = online.locator("tbody tr")
    cleo = online.get_by_role("row").filter(has=page.get_by_role("rowheader", name="cleo"))
    expect(cleo).to_have_count(1, timeout=15_000)
    expect(online.get_by_role("table")).to_have_accessible_name(re.compile(r"^1 person online \("))
    expect(announced(console)).to_have_text("cleo is online.")
    people = operator_api(stack, "GET", "/v1/admin/presence")["people"]
    assert [p["user_id"] for p in people] == ["cleo"]
    artefacts.screenshot(page, "cleo-online")

    # WHEN a second person comes online, and the console reads one person a page
    finn_page = open_demo_app(page, stack, "finn")
    expect(rows).to_have_count(2, timeout=15_000)
    console.evaluate("(element) => { element.pageSize = 1; }")

    # THEN it shows the first page, and "more" reads the next one (the focus goes to it)
    expect(rows).to_have_count(1, timeout=10_000)
    expect(online.get_by_role("table")).to_have_accessible_name(re.compile(r"^1 person online shown \("))
    online.get_by_role("button", name="Show more people").click()
    expect(rows).to_have_count(2)
    expect(rows.nth(1).get_by_role("button")).to_be_focused()
    assert sorted(cells(rows.nth(i))[0] for i in range(2)) == ["cleo", "finn"]

    # WHEN both close their page
    cleo_page.close()
    finn_page.close()

    # THEN the console drops them once Pusher's channel_vacated made them offline
    expect(rows).to_have_count(0, timeout=30_000)
    expect(online).to_contain_text("Nobody is online.")
    assert page.evaluate("window.notReloaded") is True
    assert operator_api(stack, "GET", "/v1/admin/presence")["people"] == []
    artefacts.screenshot(page, "offline-again")

    # WHEN the console's page is hidden (another tab in front) for longer than its refresh period
    reads: list[str] = []
    page.on("request", lambda request: reads.append(request.url) if "/v1/admin/" in request.url else None)
    set_hidden = """(hidden) => {
        Object.defineProperty(document, "hidden", {configurable: true, get: () => hidden});
        document.dispatchEvent(new Event("visibilitychange"));
    }"""
    page.evaluate(set_hidden, True)
    page.wait_for_timeout(500)  # a read already under way may still finish
    reads.clear()
    page.wait_for_timeout(6_000)  # longer than the presence period (5 s) and the list's (3 s)
    # THEN it reads nothing; shown again, it reads who is online at once
    assert reads == []
    with page.expect_request(lambda request: "/v1/admin/presence?" in request.url, timeout=2_000):
        page.evaluate(set_hidden, False)


def test_a_persons_notifications_arrive_live_and_one_shows_its_decision_trace_and_delivery_log(
    stack: LocalStack, page: Page, artefacts: Artefacts
) -> None:
    # GIVEN the operator looking at a person with no notification yet
    console = sign_in_operator(page, stack)
    console.get_by_label("Person (user id)").fill("eve")
    console.get_by_role("button", name="Show notifications").click()
    expect(console).to_contain_text("No notifications on record for eve.")
    page.evaluate("window.notReloaded = true")

    # WHEN a notification is put on the bus for them (offline: it goes by push)
    put_event(stack, {"event_id": "console-e1", "type": "comment_reply", "user_id": "eve", "data": REPLY})

    # THEN it appears in their list without a reload, and is announced
    recent = console.get_by_role("table", name="Recent notifications of eve, newest first")
    rows = recent.locator("tbody tr")
    expect(rows).to_have_count(1, timeout=20_000)
    expect(rows.first).to_contain_text("comment_reply")
    expect(announced(console)).to_have_text("1 new notification for eve.")
    listed = operator_api(stack, "GET", "/v1/admin/users/eve/notifications")["notifications"]
    first_id = listed[0]["notification_id"]
    expect(rows.first).to_contain_text(first_id)

    # WHEN the operator selects it
    rows.first.get_by_role("button", name=f"Show the trace of comment_reply {first_id}").click()

    # THEN its trace shows what the operator API (`herald trace`) says, once push reported sent:
    # the header, the decision rule by rule, each channel's outcome, the delivery log in time order
    assert wait_until(
        lambda: any(
            entry["outcome"] == "sent"
            for entry in operator_api(stack, "GET", f"/v1/admin/notifications/{first_id}")["delivery_log"]
        ),
        timeout=20,
    )
    trace = operator_api(stack, "GET", f"/v1/admin/notifications/{first_id}")
    article = console.get_by_role("article", name=f"Trace of {first_id}")
    expect(article).to_contain_text("comment_reply · medium · transactional · ")
    log_rows = article.get_by_role("table", name="Delivery log, in time order").locator("tbody tr")
    expect(log_rows).to_have_count(len(trace["delivery_log"]), timeout=10_000)
    decision_rows = article.get_by_role("table", name="Decision, rule by rule").locator("tbody tr")
    expect(decision_rows).to_have_count(len(trace["decision"]))
    shown = [cells(decision_rows.nth(i)) for i in range(len(trace["decision"]))]
    assert shown == [
        [str(i + 1), step["verdict"], step["rule"], step["channel"] or "—", step["reason"]]
        for i, step in enumerate(trace["decision"])
    ]
    assert ["skip", "presence", "realtime", "offline: no in-app realtime"] in [row[1:] for row in shown]
    outcomes = article.get_by_role("table", name="Each channel's outcome")
    push = outcomes.get_by_role("row").filter(has=page.get_by_role("rowheader", name="push"))
    expect(push).to_contain_text("sent")
    expect(push).to_contain_text("fcm")
    logged = [cells(log_rows.nth(i)) for i in range(len(trace["delivery_log"]))]
    expected = [(entry["channel"], entry["outcome"]) for entry in trace["delivery_log"]]
    assert [(row[2], row[3]) for row in logged] == expected
    offsets = [float(row[1].removesuffix("s")) for row in logged]
    assert all(re.fullmatch(r"\+\d+\.\ds", row[1]) for row in logged) and offsets == sorted(offsets)
    assert ("push", "sent", "fcm") in [(row[2], row[3], row[4]) for row in logged]
    artefacts.screenshot(page, "trace")

    # AND axe-core finds no serious or critical violation on the console with a trace open
    violations = axe_violations(page, "body")
    artefacts.note("axe-console-trace", violations)
    assert violations == []

    # WHEN another notification arrives while the first is selected
    selected_row = rows.filter(has_text=first_id)
    selected_row.evaluate("(row) => { row.dataset.kept = 'yes'; }")
    put_event(stack, {"event_id": "console-e2", "type": "comment_reply", "user_id": "eve", "data": REPLY})

    # THEN it goes on top, the selection and the trace stay, and the rows already shown are the same
    # elements (updated in place, no flicker)
    expect(rows).to_have_count(2, timeout=20_000)
    expect(rows.nth(1)).to_contain_text(first_id)
    expect(rows.nth(1)).to_have_attribute("data-kept", "yes")
    expect(rows.nth(1).get_by_role("button")).to_have_attribute("aria-pressed", "true")
    expect(rows.nth(0).get_by_role("button")).to_have_attribute("aria-pressed", "false")
    expect(announced(console)).to_have_text("1 new notification for eve.")
    expect(article).to_be_visible()
    assert page.evaluate("window.notReloaded") is True

    # WHEN the operator looks the second one up by its event id
    console.get_by_label("Notification or event id").fill("console-e2")
    console.get_by_role("button", name="Show trace").click()

    # THEN its trace replaces the first, and the list marks it selected
    second_id = operator_api(stack, "GET", "/v1/admin/notifications/console-e2")["notification_id"]
    expect(console.get_by_role("article", name=f"Trace of {second_id}")).to_contain_text("event console-e2")
    expect(rows.nth(0).get_by_role("button")).to_have_attribute("aria-pressed", "true")
    artefacts.screenshot(page, "trace-by-event-id")

    # WHEN Herald cannot be reached for a while (a proxy answers its HTML 502) while the operator is
    # on the selected notification's button
    second_article = console.get_by_role("article", name=f"Trace of {second_id}")
    selected_button = rows.nth(0).get_by_role("button")
    selected_button.focus()
    failing = re.compile(r"/v1/admin/(users/eve/notifications|notifications/)")
    page.route(failing, bad_gateway)

    # THEN the list and the trace shown stay, each with a note saying when it could not be
    # refreshed and Herald's HTTP status (not the HTML page's parse error); the focus stays
    notes = console.get_by_role("status").filter(has_text="Could not refresh at")
    expect(notes).to_have_count(2, timeout=10_000)
    expect(notes.first).to_contain_text("HTTP 502")
    expect(second_article.locator(".stale")).to_contain_text("HTTP 502")
    expect(rows).to_have_count(2)
    expect(second_article.get_by_role("table", name="Decision, rule by rule")).to_be_visible()
    expect(selected_button).to_be_focused()
    artefacts.screenshot(page, "could-not-refresh")

    # WHEN Herald answers again THEN the notes go, what is shown stays
    page.unroute(failing, bad_gateway)
    expect(notes).to_have_count(0, timeout=10_000)
    expect(rows).to_have_count(2)
    expect(selected_button).to_be_focused()

    # AND an unknown id says so
    console.get_by_label("Notification or event id").fill("no-such-event")
    console.get_by_role("button", name="Show trace").click()
    expect(console.get_by_role("alert")).to_have_text(
        "No notification no-such-event: never routed, expired or erased."
    )


def test_a_suppressed_contact_is_listed_and_lifted_with_a_reason_the_persons_stop_only_with_force(
    stack: LocalStack, page: Page, artefacts: Artefacts
) -> None:
    # GIVEN a bounced email address and a phone number whose owner replied STOP
    assert stack.description
    store = SuppressionStore(stack.client("dynamodb"), stack.description.ref("SuppressionTable"))
    bounced, phone, complained = "gone@example.com", "+14155550188", "spam-button@example.com"
    store.suppress(email_address(bounced), "bounced", "ses", contact=bounced, notification_id="ntf-bounced")
    store.suppress(sms_address(phone), "opted_out", "twilio", contact=phone)

    # WHEN the operator opens the console
    console = sign_in_operator(page, stack)
    section = console.locator("section.suppression")
    heading = section.get_by_role("heading", name="Suppression list")
    table = section.get_by_role("table")
    rows = table.locator("tbody tr")

    # THEN both are listed, newest first, with why, where from and since when
    expect(rows).to_have_count(2)
    expect(table).to_have_accessible_name("2 suppressed contacts, newest first")
    assert cells(rows.nth(0))[:4] == [phone, "sms", "opted_out", "twilio"]
    assert cells(rows.nth(1))[:4] == [bounced, "email", "bounced", "ses"]
    expect(rows.nth(1)).to_contain_text("ntf-bounced")
    artefacts.screenshot(page, "suppression-list")

    # WHEN the list is read one entry a page
    console.evaluate("(element) => { element.pageSize = 1; }")
    section.get_by_role("button", name="Reload").click()
    # THEN one is shown, said to be newest first among those shown only (the API pages the list in
    # the table's order), and "Load more" reads the next page, the focus on the entry it brought
    expect(rows).to_have_count(1)
    expect(table).to_have_accessible_name("1 suppressed contact shown, newest first among them")
    expect(section).to_contain_text("It is read a page at a time in its own order, not by date")
    first_shown = cells(rows.nth(0))[0]
    section.get_by_role("button", name="Load more").click()
    expect(rows).to_have_count(2)
    brought = bounced if first_shown == phone else phone
    expect(section.get_by_role("button", name=f"Lift: {brought}")).to_be_focused()
    expect(table).to_have_accessible_name("2 suppressed contacts, newest first")

    # WHEN the operator looks one contact up
    section.get_by_label("Contact (email, E.164 phone, device token or key)").fill(bounced)
    section.get_by_role("button", name="Find", exact=True).click()
    # THEN only its entry is shown, until the whole list is asked for again
    expect(rows).to_have_count(1)
    expect(rows.first.get_by_role("rowheader")).to_have_text(bounced)
    section.get_by_label("Contact (email, E.164 phone, device token or key)").fill("someone@example.com")
    section.get_by_role("button", name="Find", exact=True).click()
    expect(section).to_contain_text("someone@example.com is not suppressed.")
    console.evaluate("(element) => { element.pageSize = 100; }")
    section.get_by_role("button", name="Show the whole list").click()
    expect(section.get_by_label("Channel")).to_be_focused()
    expect(rows).to_have_count(2)

    # WHEN the list is filtered to email, and another address complains meanwhile
    section.get_by_label("Channel").select_option("email")
    expect(table.locator("tbody tr")).to_have_count(1)
    store.suppress(email_address(complained), "complained", "ses", contact=complained)
    section.get_by_role("button", name="Reload").click()
    # THEN only the email entries are listed, the newest first
    expect(rows).to_have_count(2)
    assert [cells(rows.nth(i))[0] for i in range(2)] == [complained, bounced]

    # WHEN the operator lifts the bounced one from the keyboard, giving a reason
    lift = section.get_by_role("button", name=f"Lift: {bounced}")
    lift.focus()
    page.keyboard.press("Enter")
    dialog = console.get_by_role("dialog", name=f"Lift the suppression of {bounced}")
    why = dialog.get_by_label("Why (recorded; at least 3 characters)")
    expect(why).to_be_focused()
    page.keyboard.type("mailbox fixed, confirmed by phone")
    page.keyboard.press("Tab")  # Cancel
    page.keyboard.press("Tab")  # Lift
    expect(dialog.get_by_role("button", name="Lift")).to_be_focused()
    page.keyboard.press("Enter")

    # THEN it is lifted, said so, gone from the list and from the API's suppression read, and the
    # focus is on the entry beside it in the list read again
    expect(announced(console)).to_contain_text(f"Lifted {bounced} (was bounced from ses since ")
    expect(announced(console)).to_contain_text(f"recorded as lifted by {OPERATOR}.")
    expect(dialog).to_have_count(0)
    expect(rows).to_have_count(1)
    expect(section.get_by_role("button", name=f"Lift: {complained}")).to_be_focused()
    assert suppressed(stack) == sorted([phone, complained])
    artefacts.screenshot(page, "email-lifted")

    # WHEN the operator submits a lift of the person's own STOP, and Herald is slow to answer
    section.get_by_label("Channel").select_option("")
    expect(rows).to_have_count(2)
    held: list[Route] = []
    lift_route = re.compile(r"/v1/admin/suppressions/lift$")
    page.route(lift_route, lambda route: held.append(route))
    section.get_by_role("button", name=f"Lift: {phone}").click()
    dialog = console.get_by_role("dialog", name=f"Lift the suppression of {phone}")
    dialog.get_by_label("Why (recorded; at least 3 characters)").fill("asked us by email to get texts again")
    dialog.get_by_role("button", name="Lift").click()

    # THEN while it is under way the dialog cannot be cancelled, by its button or by Escape
    expect(dialog.get_by_role("button", name="Lifting…")).to_be_disabled()
    expect(dialog.get_by_role("button", name="Cancel")).to_be_disabled()
    page.keyboard.press("Escape")
    expect(dialog).to_be_visible()
    held_back(page, held)

    # WHEN the browser closes the dialog all the same (as a repeated Escape does), and the operator
    # opens another entry's lift and types its reason before Herald answers the first
    console.evaluate("(element) => element.shadowRoot.querySelector('dialog').close()")
    expect(dialog).to_have_count(0)
    section.get_by_role("button", name=f"Lift: {complained}").click()
    other = console.get_by_role("dialog", name=f"Lift the suppression of {complained}")
    other_why = other.get_by_label("Why (recorded; at least 3 characters)")
    other_why.fill("the person wrote to support")
    held[0].continue_()  # Herald answers the STOP's lift: 409 consent_required

    # THEN the first answer is said, and never takes over the second dialog: no force is offered
    # for the STOP beside the reason typed for another contact
    expect(announced(console)).to_contain_text(f"{phone} was not lifted: ")
    expect(other).to_be_visible()
    expect(other.get_by_label("Lift the person's own opt-out anyway")).to_have_count(0)
    expect(other_why).to_have_value("the person wrote to support")
    expect(console.get_by_role("dialog", name=f"Lift the suppression of {phone}")).to_have_count(0)
    page.unroute(lift_route)
    other.get_by_role("button", name="Cancel").click()
    expect(section.get_by_role("button", name=f"Lift: {complained}")).to_be_focused()
    assert suppressed(stack) == sorted([phone, complained])

    # WHEN the operator tries to lift the person's own STOP, waiting for the answer
    section.get_by_role("button", name=f"Lift: {phone}").click()
    dialog = console.get_by_role("dialog", name=f"Lift the suppression of {phone}")
    dialog.get_by_label("Why (recorded; at least 3 characters)").fill("asked us by email to get texts again")
    dialog.get_by_role("button", name="Lift").click()

    # THEN Herald refuses (409) and the console explains it, offering force
    force = dialog.get_by_label("Lift the person's own opt-out anyway")
    expect(force).to_be_visible()
    expect(dialog).to_contain_text("This is the person's own opt-out: they replied STOP.")
    expect(dialog.get_by_role("alert")).to_contain_text("opt-out (STOP)")
    assert phone in suppressed(stack)
    artefacts.screenshot(page, "stop-needs-force")

    # AND axe-core finds no serious or critical violation with the dialog open
    violations = axe_violations(page, "body")
    artefacts.note("axe-console-lift", violations)
    assert violations == []

    # WHEN they say force
    force.check()
    dialog.get_by_role("button", name="Lift").click()

    # THEN it is lifted too, and the focus goes to the entry left
    expect(announced(console)).to_contain_text(f"Lifted {phone} (was opted_out from twilio since ")
    expect(rows).to_have_count(1)
    expect(section.get_by_role("button", name=f"Lift: {complained}")).to_be_focused()
    assert suppressed(stack) == [complained]
    artefacts.screenshot(page, "stop-lifted")

    # WHEN a Reload is slow (its answer, read before the lift, is held back) and the last entry is
    # lifted meanwhile
    stale: list[tuple[Route, APIResponse]] = []

    def hold_with_its_answer(route: Route) -> None:
        if stale:  # the first one only
            route.fallback()
        else:
            stale.append((route, route.fetch()))

    listing = re.compile(r"/v1/admin/suppressions\?")
    page.route(listing, hold_with_its_answer)
    section.get_by_role("button", name="Reload").click()
    held_back(page, stale)
    section.get_by_role("button", name=f"Lift: {complained}").click()
    dialog = console.get_by_role("dialog", name=f"Lift the suppression of {complained}")
    dialog.get_by_label("Why (recorded; at least 3 characters)").fill("the person wrote to support")
    dialog.get_by_role("button", name="Lift").click()
    expect(announced(console)).to_contain_text(f"Lifted {complained} (was complained from ses since ")
    expect(section).to_contain_text("Nothing is suppressed.")
    # THEN the slow Reload's older answer, landing last, does not bring the lifted entry back; the
    # focus, with no entry left, is on the list's heading
    route, answer = stale[0]
    with page.expect_response(lambda response: response.url == route.request.url) as landed:
        route.fulfill(response=answer)
    landed.value.finished()
    page.unroute(listing)
    settled(console)
    expect(rows).to_have_count(0)
    expect(section).to_contain_text("Nothing is suppressed.")
    expect(heading).to_be_focused()
    assert suppressed(stack) == []


def test_without_the_admin_scope_the_console_shows_herald_refusing(stack: LocalStack, page: Page) -> None:
    # GIVEN the console configured with a person's token (no admin scope)
    assert stack.sandbox and stack.api
    page.goto(f"{stack.sandbox.url}/console/")
    expect(page.get_by_label("Operator id")).to_have_value(OPERATOR)
    token = stack.sandbox.issuer.token("ben")
    page.evaluate(
        """([apiUrl, token]) => {
            const element = document.querySelector("herald-console");
            Object.assign(element, {apiUrl, tokenProvider: async () => token});
            element.hidden = false;
        }""",
        [stack.api.url, token],
    )

    # THEN every section says that Herald refuses the operator routes
    refused = "This token does not carry the admin scope: Herald refuses the operator routes (403)."
    expect(page.locator("herald-console").get_by_role("alert").filter(has_text=refused)).to_have_count(2)
    expect(page.locator("herald-console").get_by_role("button", name="Try again")).to_be_visible()


def test_a_failing_read_is_said_once_and_a_refused_token_stops_the_reading_until_try_again(
    stack: LocalStack, page: Page, artefacts: Artefacts
) -> None:
    # GIVEN the operator signed in, the console reading who is online every 200 ms, and the page
    # listening to what the console says
    assert stack.sandbox
    page.goto(f"{stack.sandbox.url}/console/")
    expect(page.get_by_label("Operator id")).to_have_value(OPERATOR)
    console = page.locator("herald-console")
    console.evaluate("(element) => { element.presenceInterval = 200; }")
    page.get_by_role("button", name="Sign in").click()
    status = page.locator("#status")
    signed_in = f"Signed in as operator {OPERATOR} (scope herald/admin)."
    expect(status).to_have_text(signed_in)
    online = console.locator("section.online")
    expect(online).to_contain_text("Nobody is online.")
    console.evaluate(
        """(element) => {
            window.heard = [];
            element.addEventListener("herald-error", (e) => heard.push(`error ${e.detail.status}`));
            element.addEventListener("herald-recovered", () => heard.push("recovered"));
        }"""
    )

    # WHEN every read of who is online fails (a proxy's HTML 502), polls in a row
    presence = re.compile(r"/v1/admin/presence\?")
    page.route(presence, bad_gateway)
    for _ in range(4):
        page.wait_for_event("requestfinished", lambda request: bool(presence.search(request.url)))

    # THEN what was shown stays with a note, and the failure is said once (the page's status line),
    # with Herald's HTTP status
    expect(online.get_by_role("status")).to_contain_text("Could not refresh at ")
    expect(online).to_contain_text("Nobody is online.")
    expect(status).to_have_text("Herald: GET /v1/admin/presence?limit=100: HTTP 502 (502).")
    assert page.evaluate("window.heard") == ["error 502"]

    # WHEN Herald answers again THEN the note goes and the page's status is back
    page.unroute(presence)
    expect(status).to_have_text(signed_in)
    expect(online.get_by_role("status")).to_have_count(0)
    assert page.evaluate("window.heard") == ["error 502", "recovered"]

    # WHEN Herald refuses the token (401)
    refused = re.compile(r"/v1/admin/")
    expired = {"error": {"code": "unauthorized", "message": "the token has expired"}}
    page.route(refused, lambda route: route.fulfill(status=401, headers=CORS, json=expired))

    # THEN the console stops reading, says so once, and offers to try again
    try_again = console.get_by_role("button", name="Try again")
    expect(try_again).to_be_visible()
    expect(status).to_have_text("Herald: the token has expired (401).")
    reads: list[str] = []
    page.on("request", lambda request: reads.append(request.url) if refused.search(request.url) else None)
    page.wait_for_timeout(1_500)  # more than seven of its 200 ms periods
    assert reads == []
    assert page.evaluate("window.heard") == ["error 502", "recovered", "error 401"]
    artefacts.screenshot(page, "token-refused")

    # WHEN Herald would take a new token, and the operator presses "Try again"
    page.unroute(refused)
    with page.expect_request(lambda request: "/_token?" in request.url):
        try_again.click()

    # THEN the page's token provider dropped the token it kept and got a new one, the console reads
    # again, and the page's status is back
    expect(try_again).to_have_count(0)
    expect(console.get_by_role("heading", name="Who is online")).to_be_focused()
    expect(status).to_have_text(signed_in)
    page.wait_for_event("requestfinished", lambda request: bool(presence.search(request.url)))
    assert page.evaluate("window.heard") == ["error 502", "recovered", "error 401", "recovered"]

    # WHEN the operator looks at a person and a channel, then signs out and in again
    console.get_by_label("Person (user id)").fill("nobody-here")
    console.get_by_role("button", name="Show notifications").click()
    expect(console).to_contain_text("No notifications on record for nobody-here.")
    console.get_by_label("Channel").select_option("sms")
    page.get_by_role("button", name="Sign out").click()
    page.get_by_role("button", name="Sign in").click()
    expect(status).to_have_text(signed_in)

    # THEN nothing of the last session is kept: no person, all channels
    assert console.evaluate("async (element) => (await element.updateComplete, element.person)") == ""
    expect(console.get_by_label("Person (user id)")).to_have_value("")
    expect(console.get_by_label("Channel")).to_have_value("")
    expect(console.locator("section.notifications").get_by_role("table")).to_have_count(0)
