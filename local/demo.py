"""`make demo`: Herald end to end on the local stack, through the real path.

Brings the stack up (moto, sandboxes, the template provisioned, the real handlers), seeds demo
users, puts each scenario's events on the bus exactly as a producer would, waits for the outcome,
then prints a timeline of what happened to each notification (channel, when, why), an outcome
table, and ends with what support would ask: `herald trace` of the email the bounce stopped. Exits 0
only when every scenario got its expected outcome; shuts the stack down either way.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import shlex
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from pathlib import Path
from typing import Any

from herald.stores.dynamo import from_attributes
from local.app_client import AppAnswer, AppClient
from local.ses_feedback import MotoDataJsonMail, RecordedSend
from local.stack import STATE_DIR, LocalStack


def say(*parts: Any) -> None:
    """The demo's own output, to the terminal (the stack's logs go to .local/demo.log)."""
    print(*parts, file=CONSOLE, flush=True)


CONSOLE = sys.stdout
LOG_FILE = STATE_DIR / "demo.log"
FALLBACK_DELAY_SECONDS = 30  # the template's minimum: the "push ignored" scenario waits this long
SETTLE_TIMEOUT_SECONDS = 120  # the scheduled broadcast fires at the next minute: up to 60 s away
BOUNCING = "bounce+bea@simulator.amazonses.com"  # the SES mailbox simulator answers with a hard bounce
TRACED_EVENT = "demo-ship-bea-2"  # the demo ends with `herald trace` of this one
SIGN_IN = {
    "action": "New sign-in",
    "device": "Firefox on Linux",
    "ip_address": "203.0.113.7",
    "location": "Lisbon, PT",
    "review_url": "https://app.example.com/security",
}
SHIPPED = {
    "order_id": "999",
    "carrier": "DHL",
    "tracking_url": "https://example.com/t/999",
    "address": "1 Rua Augusta",
}
PROMO = {"headline": "Winter sale", "discount": "20%", "cta_url": "https://example.com/sale"}
DRIVER = {"driver_name": "Rui", "vehicle": "grey Toyota Prius", "plate": "AA-12-BB"}
RECEIPT = {
    "amount": "49.90",
    "currency": "EUR",
    "merchant": "Example Store",
    "card_last4": "4242",
    "receipt_url": "https://app.example.com/receipts/r-1",
}


@dataclass
class Observed:
    """Everything the demo can see through the stack's surfaces at one moment."""

    outbox: list[dict[str, Any]]
    emails: list[RecordedSend]
    rejected: list[dict[str, Any]]
    records: list[dict[str, Any]]

    def deliveries(self, recipient: str) -> list[str]:
        """The channels that reached `recipient` (an address, a phone, a token, a channel, a URL)."""
        channels = [e["channel"] for e in self.outbox if recipient in (e.get("recipient") or "")]
        channels += ["email" for m in self.emails if any(recipient in a for a in set(m.addresses()))]
        return sorted(channels)

    def records_for(self, user_id: str) -> list[dict[str, Any]]:
        return [r for r in self.records if r["user_id"] == user_id]


@dataclass
class Scenario:
    """Events to play, and what each recipient address must have received (exactly)."""

    name: str
    expectation: str
    events: list[dict[str, Any]]
    expected: dict[str, list[str]]
    also: Callable[[Observed], bool] = lambda seen: True
    prepare: Callable[[LocalStack], None] = lambda stack: None
    # what the person's app does once something arrived (called on every look until the end)
    react: Callable[[LocalStack, Observed], None] = lambda stack, seen: None
    users: list[str] = field(default_factory=list)
    seen_at: float | None = None

    def observed(self, seen: Observed) -> dict[str, list[str]]:
        return {recipient: seen.deliveries(recipient) for recipient in self.expected}

    def check(self, seen: Observed) -> bool:
        return self.observed(seen) == self.expected and self.also(seen)


def quiet_now() -> dict[str, str]:
    """Quiet hours that cover the current time (in UTC, the demo user's zone)."""
    now = datetime.now(UTC)
    return {
        "start": (now - timedelta(hours=2)).strftime("%H:00"),
        "end": (now + timedelta(hours=3)).strftime("%H:00"),
    }


@dataclass(frozen=True)
class DemoUser:
    """A demo person: what the product's backend syncs (`UserUpserted`) and what their app registers
    and chooses through the HTTP API (device tokens, preferences)."""

    directory: dict[str, Any]
    devices: tuple[str, ...] = ()
    preferences: dict[str, Any] | None = None

    @property
    def user_id(self) -> str:
        return str(self.directory["user_id"])


def demo_users(receiver_url: str) -> list[DemoUser]:
    return [
        DemoUser(
            {"user_id": "ana", "email": "ana+success@simulator.amazonses.com", "phone": "+14155550101"},
            devices=("ana-phone",),
        ),
        DemoUser({"user_id": "ben", "email": "ben+success@simulator.amazonses.com"}, devices=("ben-phone",)),
        DemoUser(
            {"user_id": "cleo", "email": "cleo+success@simulator.amazonses.com"},
            devices=("cleo-phone",),
            preferences={"marketing_opt_in": True},
        ),
        DemoUser(
            {"user_id": "dan", "email": "dan+success@simulator.amazonses.com", "phone": "+14155550104"},
            devices=("dan-phone",),
            preferences={"quiet_hours": quiet_now(), "time_zone": "UTC"},
        ),
        DemoUser({"user_id": "eve", "email": "eve+success@simulator.amazonses.com"}, devices=("eve-phone",)),
        DemoUser({"user_id": "hal", "email": "hal+success@simulator.amazonses.com"}, devices=("hal-phone",)),
        DemoUser(
            {"user_id": "ivy", "email": "ivy+success@simulator.amazonses.com", "phone": "+14155550109"},
            devices=("ivy-phone",),
        ),
        DemoUser(
            {"user_id": "finn", "email": "finn+success@simulator.amazonses.com"}, devices=("finn-phone",)
        ),
        DemoUser(
            {
                "user_id": "42",
                "email": "42+success@simulator.amazonses.com",
                "phone": "+14155550142",
                "roles": ["admin"],
            },
            devices=("phone-42",),
        ),
        DemoUser({"user_id": "gus", "email": "gus+success@simulator.amazonses.com"}, devices=("gus-phone",)),
        DemoUser({"user_id": "bea", "email": BOUNCING}),  # no app installed: medium goes by email
        # the on-call team (a role): a manual broadcast reaches their phones
        DemoUser({"user_id": "oli", "roles": ["oncall"]}, devices=("oli-phone",)),
        DemoUser({"user_id": "pia", "roles": ["oncall"]}, devices=("pia-phone",)),
        # newsletter subscribers (a role, opted in to marketing): a scheduled broadcast mails them
        DemoUser(
            {"user_id": "quin", "email": "quin+success@simulator.amazonses.com", "roles": ["subscribers"]},
            preferences={"marketing_opt_in": True},
        ),
        DemoUser(
            {"user_id": "rae", "email": "rae+success@simulator.amazonses.com", "roles": ["subscribers"]},
            preferences={"marketing_opt_in": True},
        ),
        DemoUser({"user_id": "acme", "webhook": {"url": receiver_url, "secret_name": "acme"}}),
    ]


def failed_twice_then_sent_after_backoff(seen: Observed, user_id: str) -> bool:
    """The delivery log reads retry, retry, sent, each retry waited out (SQS visibility backoff)."""
    log = [entry for record in seen.records_for(user_id) for entry in record.get("delivery_log", [])]
    if [entry.get("outcome") for entry in log] != ["queued", "retry", "retry", "sent"]:
        return False
    times = [datetime.fromisoformat(entry["at"]) for entry in log[1:]]
    return all(later - earlier >= timedelta(seconds=1) for earlier, later in pairwise(times))


def scenarios() -> list[Scenario]:
    def go_online(stack: LocalStack) -> None:
        """finn's app subscribes to his channel: Pusher (the sandbox) sends its signed
        `channel_occupied` webhook to the HTTP API, which records him online."""
        assert stack.sandbox
        delivery = stack.sandbox.pusher.occupy("private-user-finn")
        if delivery is None or delivery.status != 200:
            raise RuntimeError(f"the presence webhook was not accepted: {delivery}")

    def acknowledge_once_pushed(stack: LocalStack, seen: Observed) -> None:
        """hal's app got the push and he opens it: the app acknowledges through the HTTP API."""
        assert stack.api and stack.sandbox
        records = seen.records_for("hal")
        if not seen.deliveries("hal-phone") or not records or records[0].get("acked_at"):
            return
        app = AppClient(stack.api.url, stack.sandbox.url)
        _expect(app.post(f"/v1/me/notifications/{records[0]['notification_id']}/ack", user="hal"))

    def ship_again_once_bounced(stack: LocalStack, seen: Observed) -> None:
        """bea's first email bounced (SES's event came back through the feedback function): the
        shop ships her next order. Its email must not go to the address that bounced."""
        states = {
            r["event_id"]: (r.get("deliveries") or {}).get("email", {}).get("state")
            for r in seen.records_for("bea")
        }
        if (
            states.get("demo-ship-bea-1") == "bounced"
            and TRACED_EVENT not in states
            and not bea_shipped_again
        ):
            bea_shipped_again.append(True)
            put_events(
                stack,
                [{"event_id": TRACED_EVENT, "type": "order_shipped", "user_id": "bea", "data": SHIPPED}],
            )

    def second_email_suppressed(seen: Observed) -> bool:
        second = next((r for r in seen.records_for("bea") if r["event_id"] == TRACED_EVENT), None)
        return second is not None and any(
            (step["rule"], step.get("channel")) == ("suppression", "email") for step in second["decision"]
        )

    bea_shipped_again: list[bool] = []

    def broadcast_to_oncall(stack: LocalStack) -> None:
        """An operator sends a maintenance alert to everyone on call, as a producer would."""
        data = json.dumps(SIGN_IN)
        if not run_herald(
            stack, "send", "security_alert", "--role", "oncall", "--data", data, "--event-id", "ops-1"
        ):
            raise RuntimeError("herald send failed")

    def schedule_the_newsletter(stack: LocalStack) -> None:
        """The newsletter goes out every minute here (every Monday 09:00 in a real product)."""
        args = [
            "schedule",
            "put",
            "newsletter",
            "--expression",
            "cron(* * * * ? *)",
            "--type",
            "marketing_promo",
        ]
        if not run_herald(stack, *args, "--role", "subscribers", "--data", json.dumps(PROMO)):
            raise RuntimeError("herald schedule put failed")

    newsletter_stopped: list[bool] = []

    def stop_the_newsletter_once_fired(stack: LocalStack, seen: Observed) -> None:
        """One issue is enough for the demo: the schedule goes once its first firing is routed."""
        fired = not newsletter_stopped and seen.records_for("quin") and seen.records_for("rae")
        if fired and run_herald(stack, "schedule", "delete", "newsletter", quiet=True):
            newsletter_stopped.append(True)

    def fired_by_the_schedule(seen: Observed) -> bool:
        records = seen.records_for("quin") + seen.records_for("rae")
        return len(records) >= 2 and all(r["event_id"].startswith("sched-newsletter-") for r in records)

    def failing_receiver(stack: LocalStack) -> None:
        assert stack.sandbox
        stack.sandbox.faults.add("webhook", status=503, count=2)

    return [
        Scenario(
            "offline user, medium",
            "push to ana's phone only",
            [{"event_id": "demo-ship-1", "type": "order_shipped", "user_id": "ana", "data": SHIPPED}],
            {"ana-phone": ["push"], "ana+success@": [], "+14155550101": []},
            users=["ana"],
        ),
        Scenario(
            "marketing without opt-in",
            "skipped, with the reason",
            [{"event_id": "demo-promo-ben", "type": "marketing_promo", "user_id": "ben", "data": PROMO}],
            {"ben-phone": [], "ben+success@": []},
            also=lambda seen: any(r["status"] == "skipped" for r in seen.records_for("ben")),
            users=["ben"],
        ),
        Scenario(
            "marketing with opt-in",
            "email only",
            [{"event_id": "demo-promo-cleo", "type": "marketing_promo", "user_id": "cleo", "data": PROMO}],
            {"cleo+success@": ["email"], "cleo-phone": []},
            users=["cleo"],
        ),
        Scenario(
            "critical in quiet hours",
            "push + SMS + email at once",
            [{"event_id": "demo-signin-dan", "type": "security_alert", "user_id": "dan", "data": SIGN_IN}],
            {"dan-phone": ["push"], "+14155550104": ["sms"], "dan+success@": ["email"]},
            users=["dan"],
        ),
        Scenario(
            "duplicate event",
            "delivered once",
            [
                {
                    "event_id": "demo-reply-1",
                    "type": "comment_reply",
                    "user_id": "gus",
                    "data": {
                        "author": "Ben",
                        "excerpt": "Nice!",
                        "thread_url": "https://app.example.com/t/1",
                    },
                }
            ]
            * 3,
            {"gus-phone": ["push"]},
            also=lambda seen: len(seen.records_for("gus")) == 1,
            users=["gus"],
        ),
        Scenario(
            "malformed event",
            "dead-letter queue, reason shown",
            [{"event_id": "demo-bad-1", "type": "order_shipped", "data": SHIPPED}],
            {},
            also=lambda seen: any(r["event_id"] == "demo-bad-1" for r in seen.rejected),
        ),
        Scenario(
            "webhook receiver fails twice",
            "delivered once, after backoff",
            [
                {
                    "event_id": "demo-hook-1",
                    "type": "order_webhook",
                    "user_id": "acme",
                    "data": {"order_id": "999", "status": "shipped"},
                }
            ],
            {"acme": ["webhook"]},
            also=lambda seen: failed_twice_then_sent_after_backoff(seen, "acme"),
            prepare=failing_receiver,
            users=["acme"],
        ),
        Scenario(
            "online user, medium",
            "in-app realtime, no push",
            [
                {
                    "event_id": "demo-reply-finn",
                    "type": "comment_reply",
                    "user_id": "finn",
                    "data": {
                        "author": "Cleo",
                        "excerpt": "Agreed",
                        "thread_url": "https://app.example.com/t/2",
                    },
                }
            ],
            {"private-user-finn": ["realtime"], "finn-phone": []},
            prepare=go_online,
            users=["finn"],
        ),
        Scenario(
            "push acknowledged, high",
            "push, acknowledged in app: no email",
            [{"event_id": "demo-pay-hal", "type": "payment_receipt", "user_id": "hal", "data": RECEIPT}],
            {"hal-phone": ["push"], "hal+success@": []},
            also=lambda seen: any(r.get("acked_at") for r in seen.records_for("hal")),
            react=acknowledge_once_pushed,
            users=["hal"],
        ),
        Scenario(
            "push ignored, high",
            f"push, then email after {FALLBACK_DELAY_SECONDS}s",
            [{"event_id": "demo-pay-eve", "type": "payment_receipt", "user_id": "eve", "data": RECEIPT}],
            {"eve-phone": ["push"], "eve+success@": ["email"]},
            users=["eve"],
        ),
        Scenario(
            "driver is here, unanswered",
            "push, then SMS 5 s later (chain)",
            [{"event_id": "demo-ride-ivy", "type": "driver_arrived", "user_id": "ivy", "data": DRIVER}],
            {"ivy-phone": ["push"], "+14155550109": ["sms"], "ivy+success@": []},
            users=["ivy"],
        ),
        Scenario(
            "manual broadcast to a role",
            "herald send --role: each phone once",
            [],
            {"oli-phone": ["push"], "pia-phone": ["push"]},
            prepare=broadcast_to_oncall,
            users=["oli", "pia"],
        ),
        Scenario(
            "scheduled broadcast to a role",
            "at the next minute: each email once",
            [],
            {"quin+success@": ["email"], "rae+success@": ["email"]},
            also=fired_by_the_schedule,
            prepare=schedule_the_newsletter,
            react=stop_the_newsletter_once_fired,
            users=["quin", "rae"],
        ),
        Scenario(
            "hard bounce, then the next email",
            "1 email; the next one suppressed",
            [{"event_id": "demo-ship-bea-1", "type": "order_shipped", "user_id": "bea", "data": SHIPPED}],
            {BOUNCING: ["email"]},
            also=second_email_suppressed,
            react=ship_again_once_bounced,
            users=["bea"],
        ),
    ]


# -- observing -------------------------------------------------------------------------------------


def observe(stack: LocalStack, mail: MotoDataJsonMail, emails: list[RecordedSend]) -> Observed:
    assert stack.sandbox and stack.description
    emails.extend(mail.new_messages())
    dynamodb = stack.client("dynamodb")
    records: list[dict[str, Any]] = []
    for page in dynamodb.get_paginator("scan").paginate(
        TableName=stack.description.ref("NotificationsTable")
    ):
        records += [from_attributes(item) for item in page["Items"]]
    return Observed(
        outbox=[e.to_dict() for e in stack.sandbox.outbox.entries()],
        emails=list(emails),
        rejected=_peek_dead_letters(stack),
        records=records,
    )


def _peek_dead_letters(stack: LocalStack) -> list[dict[str, Any]]:
    assert stack.description
    sqs = stack.client("sqs")
    url = stack.description.ref("IngestDeadLetterQueue")
    found = sqs.receive_message(
        QueueUrl=url, MaxNumberOfMessages=10, MessageAttributeNames=["All"], VisibilityTimeout=0
    ).get("Messages", [])
    rejected = []
    for message in found:
        attributes = message.get("MessageAttributes", {})
        rejected.append(
            {
                "event_id": attributes.get("herald_event_id", {}).get("StringValue"),
                "reason": attributes.get("herald_rejection_reason", {}).get("StringValue"),
            }
        )
    return rejected


# -- printing --------------------------------------------------------------------------------------


def _clock(value: str | None) -> str:
    if not value:
        return "        "
    return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC).strftime("%H:%M:%S")


def print_timeline(scenario: Scenario, seen: Observed) -> None:
    say(f"\n── {scenario.name} ─ expected: {scenario.expectation}")
    for user_id in scenario.users:
        for record in sorted(seen.records_for(user_id), key=lambda r: r["created_at"]):
            event = record["event_id"]
            if scenario.events and not any(e.get("event_id") == event for e in scenario.events):
                continue
            say(
                f"  {_clock(record['created_at'])}  {record['type']} → {user_id}  [{record['urgency']}]"
                f"  status: {record['status']}"
            )
            for step in record.get("decision", []):
                if step["rule"] == "idempotency":
                    continue
                channel = f" {step['channel']}" if step.get("channel") else ""
                say(f"            why: {step['rule']}{channel}: {step['verdict']} — {step['reason']}")
            for attempt in record.get("delivery_log", []):
                detail = attempt.get("detail") or attempt.get("provider_message_id") or ""
                via = f" via {attempt['provider']}" if attempt.get("provider") else ""
                say(
                    f"  {_clock(attempt.get('at') or attempt.get('time'))}  {attempt.get('channel')}"
                    f"{via}: {attempt.get('outcome')} {detail}".rstrip()
                )
    for rejected in seen.rejected:
        if any(rejected["event_id"] == e.get("event_id") for e in scenario.events):
            say(f"            dead-letter queue: {rejected['event_id']}: {rejected['reason']}")


def print_providers(seen: Observed) -> None:
    say("\nWhat each provider received")
    for entry in seen.outbox:
        title = entry.get("subject") or entry.get("title") or entry.get("body") or ""
        say(
            f"  {_clock(entry.get('time'))}  {entry['provider']:<9} {entry['channel']:<9} "
            f"{entry.get('recipient', ''):<34} {title[:48]}"
        )
    for mail in seen.emails:
        say(
            f"  {'':8}  {'ses':<9} {'email':<9} {', '.join(sorted(set(mail.addresses()))):<34} "
            f"{(mail.subject or _subject_of(mail.raw_data))[:48]}"
        )


def print_inboxes(stack: LocalStack, users: list[str]) -> None:
    """What each person's app shows, read through the HTTP API as the app would (their own token)."""
    assert stack.api and stack.sandbox
    app = AppClient(stack.api.url, stack.sandbox.url)
    say("\nInboxes, through the app API (GET /v1/me/notifications/count, /v1/me/notifications)")
    for user_id in dict.fromkeys(users):
        counts = app.get("/v1/me/notifications/count", user=user_id)
        page = app.get("/v1/me/notifications", user=user_id, query={"limit": 1})
        if not (counts.ok and page.ok):
            say(f"  {user_id:<6} the API answered {counts.status} / {page.status}")
            continue
        latest = page.body["items"][0] if page.body["items"] else None
        render = (latest or {}).get("render") or {}
        shown = f"latest: {render.get('title') or (latest or {}).get('type', '')}" if latest else "empty"
        say(f"  {user_id:<6} unread {counts.body['unread']}, unseen {counts.body['unseen']}  {shown}")


def _subject_of(raw: str | None) -> str:
    from email import message_from_string
    from email.header import decode_header, make_header

    if not raw:
        return ""
    return str(make_header(decode_header(message_from_string(raw).get("Subject", ""))))


def print_outcomes(results: list[tuple[Scenario, bool]], seen: Observed, elapsed: float) -> None:
    width = max(len(s.name) for s, _ in results)
    say(f"\n{'scenario':<{width}}  {'expected':<34}  outcome")
    say(f"{'-' * width}  {'-' * 34}  -------")
    for scenario, ok in results:
        after = f" (after {scenario.seen_at:.0f}s)" if scenario.seen_at is not None else ""
        verdict = "ok" + after if ok else f"NOT MET: observed {scenario.observed(seen)}"
        say(f"{scenario.name:<{width}}  {scenario.expectation:<34}  {verdict}")
    passed = sum(ok for _, ok in results)
    say(f"\n{passed}/{len(results)} scenarios as expected in {elapsed:.0f}s")


# -- the run ---------------------------------------------------------------------------------------


def run(verbose: bool = False) -> int:
    """Functions log JSON to stdout as in Lambda: unless verbose, that goes to .local/demo.log."""
    if verbose:
        logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
        return _play()
    STATE_DIR.mkdir(exist_ok=True)
    say(f"(the stack's own logs go to {LOG_FILE.relative_to(STATE_DIR.parent)})")
    with LOG_FILE.open("w", encoding="utf-8") as log, contextlib.redirect_stdout(log):
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", stream=log)
        return _play()


def _play() -> int:
    started = time.monotonic()
    say("Starting Herald's local stack (moto, provider sandboxes, template.yaml, the real handlers)...")
    with LocalStack(
        aws_port=0, sandbox_port=0, api_port=0, parameters={"FallbackDelaySeconds": FALLBACK_DELAY_SECONDS}
    ) as stack:
        say(
            f"Stack up in {time.monotonic() - started:.0f}s; playing the scenarios on bus {stack.bus_name}..."
        )
        results, seen = play(stack)
        say("\nTimeline")
        for scenario, _ in results:
            print_timeline(scenario, seen)
        print_providers(seen)
        print_inboxes(stack, [user for scenario, _ in results for user in scenario.users])
        print_outcomes(results, seen, time.monotonic() - started)
        traced = print_trace(stack, TRACED_EVENT)
    return 0 if all(ok for _, ok in results) and traced else 1


def print_trace(stack: LocalStack, event_id: str) -> bool:
    """What support runs when bea asks why her shipping email never came."""
    say("\nWhy did bea get no email about her second order?")
    return run_herald(stack, "trace", event_id)


def run_herald(stack: LocalStack, *args: str, quiet: bool = False) -> bool:
    """The operator CLI, as a separate process against the running stack (.local/stack.json), its
    command and output shown (unless `quiet`: the output only when it fails)."""
    herald = Path(sys.executable).with_name("herald")
    if not quiet:
        say(f"$ herald {' '.join(shlex.quote(a) for a in args)} --local")
    if not herald.exists():
        say("  the `herald` console script is not installed: run `make venv`")
        return False
    command = [str(herald), *args, "--local", "--state-file", str(stack.state_file)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    if not quiet or result.returncode != 0:
        say((result.stdout or result.stderr).rstrip())
    return result.returncode == 0


def seed(stack: LocalStack, timeout: float = 30.0) -> None:
    """The demo's people, as a product integrates Herald: its backend syncs them over the bus
    (`UserUpserted`), their apps register devices and set preferences through the HTTP API with
    tokens from the local issuer. Waits until the directory has applied every upsert. The webhook
    subscriber's signing secret is shared with its receiver through Secrets Manager."""
    assert stack.sandbox and stack.api
    stack.sandbox.receivers.add("acme")
    stack.client("secretsmanager").create_secret(
        Name="herald/dev/webhooks/acme",
        SecretString=json.dumps({"secret": stack.sandbox.receivers.secret("acme")}),
    )
    people = demo_users(f"{stack.sandbox.url}/receivers/acme")
    upserts = [
        {
            "EventBusName": stack.bus_name,
            "Source": "com.example.accounts",
            "DetailType": "UserUpserted",
            "Detail": json.dumps({**person.directory, "version": 1}),
        }
        for person in people
    ]
    for start in range(0, len(upserts), 10):  # PutEvents takes at most 10 entries
        response = stack.client("events").put_events(Entries=upserts[start : start + 10])
        if response["FailedEntryCount"]:
            raise RuntimeError(f"put_events refused directory upserts: {response['Entries']}")
    app = AppClient(stack.api.url, stack.sandbox.url)
    for person in people:
        for token in person.devices:
            _expect(
                app.put(f"/v1/me/devices/{token}", user=person.user_id, json_body={"platform": "android"})
            )
        if person.preferences is not None:
            _expect(app.put("/v1/me/preferences", user=person.user_id, json_body=person.preferences))
    deadline = time.monotonic() + timeout
    waiting = {p.user_id for p in people}
    while waiting and time.monotonic() < deadline:
        for user_id in sorted(waiting):
            exported = _expect(app.get("/v1/me/export", user=user_id)).body
            if (exported.get("directory") or {}).get("version") == 1:
                waiting.discard(user_id)
        time.sleep(0.2)
    if waiting:
        raise RuntimeError(f"the directory did not apply {sorted(waiting)} within {timeout:.0f}s")


def _expect(answer: AppAnswer) -> AppAnswer:
    if not answer.ok:
        raise RuntimeError(f"the HTTP API refused a demo request: {answer.status} {answer.body}")
    return answer


def play(
    stack: LocalStack, timeout: float = SETTLE_TIMEOUT_SECONDS
) -> tuple[list[tuple[Scenario, bool]], Observed]:
    """Seed, put every scenario's events on the bus as a producer would, wait for the outcomes."""
    assert stack.moto
    seed(stack)
    plays = scenarios()
    for scenario in plays:
        scenario.prepare(stack)
    played = time.monotonic()
    for scenario in plays:
        put_events(stack, scenario.events, scenario.name)

    mail = MotoDataJsonMail(stack.moto.url)
    emails: list[RecordedSend] = []
    while True:
        seen = observe(stack, mail, emails)
        for scenario in plays:
            scenario.react(stack, seen)
            if scenario.seen_at is None and scenario.check(seen):
                scenario.seen_at = time.monotonic() - played
        if all(s.seen_at is not None for s in plays) or time.monotonic() > played + timeout:
            break
        time.sleep(1)
    time.sleep(3)  # let late duplicates (if any) show up before judging
    seen = observe(stack, mail, emails)
    return [(s, s.check(seen)) for s in plays], seen


def put_events(stack: LocalStack, details: list[dict[str, Any]], what: str = "") -> None:
    """`NotificationRequested` events on the bus, as the product's services put them."""
    if not details:
        return
    entries = [
        {
            "EventBusName": stack.bus_name,
            "Source": "com.example.demo",
            "DetailType": "NotificationRequested",
            "Detail": json.dumps(detail),
        }
        for detail in details
    ]
    response = stack.client("events").put_events(Entries=entries)
    if response["FailedEntryCount"]:
        say(f"  put_events refused {what or details}: {response['Entries']}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make demo", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="show the stack's log")
    return run(verbose=parser.parse_args(argv).verbose)


if __name__ == "__main__":
    sys.exit(main())
