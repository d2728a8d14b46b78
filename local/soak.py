"""`make soak`: Herald's reliability suite, with figures, on the local stack.

Four scenarios, each judged only through the stack's public surfaces:

- burst: N notifications spread over all five channels, one user each: every expected delivery
  arrives, none is lost, none is sent twice;
- duplicate storm: events each put several times while SQS redelivers every processed message
  once more (`Runner.force_redelivery`, SQS's at-least-once made certain): one send per channel;
- outage: each provider in turn answers 503 for a while: everything is delivered after recovery,
  once, and nothing is dead-lettered;
- poison: hypothesis-generated malformed `NotificationRequested` events mixed into the same
  `PutEvents` batches as valid ones: each malformed one is in the ingest DLQ with its reason, every
  valid neighbour is delivered;
- presence webhooks: Pusher's genuine webhooks captured and replayed, re-keyed, tampered, signed
  with another secret or sent stale: each forged one refused (401), the replay without effect;
- feedback webhooks: SendGrid's and Twilio's genuine signed callbacks (from the sandboxes, for
  notifications the stack sent) captured, then replayed, replayed late (an older status after a
  newer one), tampered, signed with another key or token, moved onto another notification's URL,
  sent unsigned or with a stale timestamp: each forged one refused (401), nothing moved by the
  replays, no address suppressed;
- cross-user: people with a delivered notification, a device, preferences and a consent; another
  person tries every `/v1/me` route on them (their ids in paths, bodies and queries, their
  cursors, tokens forged in their name, no token): every attempt is refused or answers about the
  caller only, and each target's export is the same afterwards.

What the suite touches: `PutEvents` on the Herald bus (boto3 at the moto endpoint); the HTTP API
with tokens from the local issuer; the sandboxes' HTTP control API (`/_outbox`, `/_faults`,
`/_receivers`, `/_pusher/occupy`, `/_sendgrid/events`,
`/_twilio/status_callback`); SQS and DynamoDB reads of the stack's own queues and tables
(queue depths, dead-letter queues, delivery logs). It never calls a handler. The thousands of
burst users are written straight into the users table (through the bus and the API the seeding
alone would take minutes; `make demo` and the cross-user scenario go through them); online users
subscribe through the Pusher sandbox, whose signed webhooks reach the HTTP API as Pusher's do.

Prints a table, writes `.local/soak.json`, exits 1 on any loss, double or dead-letter mismatch.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import hashlib
import hmac
import itertools
import json
import logging
import random
import re
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import warnings
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

import jwt
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from herald.catalog import load_catalog
from herald.routing.decision import notification_id_for
from herald.stores.dynamo import batch_get, from_attributes
from herald.stores.keys import email_address, sms_address
from herald.stores.users import UserStore
from herald.users import UserProfile
from local.app_client import AppClient
from local.ses_feedback import MotoDataJsonMail
from local.stack import REPO, STATE_DIR, LocalStack

CONSOLE = sys.stdout
LOG_FILE = STATE_DIR / "soak.log"
REPORT_FILE = STATE_DIR / "soak.json"
# SendGrid carries email so that every provider's outage can be injected (moto's SES cannot fail),
# and a 1 s first backoff step (the template's minimum) keeps the outages short.
STACK_PARAMETERS = {"EmailProvider": "sendgrid", "ProviderRetryBaseSeconds": "1"}
# TTL expiry is emulated by scanning every TTL table, and moto copies every item it scans: at
# thousands of records a sweep a second slowed the stack tenfold. Nothing the suite makes expires
# within a run, so it sweeps every 30 s instead.
RUNNER_OPTIONS = {"ttl_interval_seconds": 30.0}
WEBHOOK_SECRET_NAME = "soak"
CHANNEL_QUEUES = ("EmailQueue", "PushQueue", "SmsQueue", "RealtimeQueue", "WebhookQueue")
WORK_QUEUES = ("IngestQueue", "BroadcastQueue", *CHANNEL_QUEUES)
DEAD_LETTER_QUEUES = (
    "IngestDeadLetterQueue",
    "BroadcastDeadLetterQueue",
    "EmailDeadLetterQueue",
    "PushDeadLetterQueue",
    "SmsDeadLetterQueue",
    "RealtimeDeadLetterQueue",
    "WebhookDeadLetterQueue",
)
PROVIDER_CHANNEL = {
    "sendgrid": "email",
    "fcm": "push",
    "twilio": "sms",
    "pusher": "realtime",
    "webhook": "webhook",
}
DEVICE = {"platform": "android", "registered_at": "2026-01-01T00:00:00Z"}
BROADCAST_MUTED_EVERY = 10  # one broadcast member in ten muted the type: skipped, with the reason
PUT_BATCH = 10  # PutEvents takes at most 10 entries
CONSENT = {"granted": True, "wording_version": "v1"}
POLL_SECONDS = 0.5  # the outbox
QUIET_CHECK_SECONDS = 2.0  # the queues' depths, until every expected delivery has arrived


SIGNATURE = "X-Pusher-Signature"


def _hmac(secret: str, body: bytes) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def base64_text(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def say(*parts: Any) -> None:
    """The suite's own output, to the terminal (the stack's logs go to .local/soak.log)."""
    print(*parts, file=CONSOLE, flush=True)


# ---------------------------------------------------------------------------------------------
# Who receives what: a kind of notification, and the user that makes it take its channels
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Kind:
    """A notification type sent to a user set up so that the routing table picks `channels`."""

    name: str
    type: str
    channels: tuple[str, ...]
    email: bool = True
    phone: bool = False
    device: bool = True
    online: bool = False
    marketing_opt_in: bool = False
    webhook: bool = False


KINDS = (
    Kind("critical", "security_alert", ("push", "sms", "email"), phone=True),  # all at once
    Kind("online", "comment_reply", ("realtime",), online=True),  # medium, online: in-app only
    Kind("offline", "order_shipped", ("push",), phone=True),  # medium, offline: push only, no email
    Kind("promotional", "marketing_promo", ("email",), marketing_opt_in=True),  # low, opted in
    Kind("system", "order_webhook", ("webhook",), email=False, device=False, webhook=True),
)
# The kind each provider's outage is shown with (SMS goes out with critical notifications only).
CRITICAL, ONLINE, OFFLINE, PROMOTIONAL, SYSTEM = KINDS
KIND_BY_CHANNEL = {
    "email": PROMOTIONAL,
    "push": OFFLINE,
    "sms": CRITICAL,
    "realtime": ONLINE,
    "webhook": SYSTEM,
}


@dataclass(frozen=True)
class Recipient:
    """One seeded user and the address each channel reaches them at (as the sandboxes record it)."""

    user_id: str
    email: str
    phone: str
    token: str
    channel: str
    receiver: str

    def address(self, channel: str) -> str:
        return {
            "email": self.email,
            "push": self.token,
            "sms": self.phone,
            "realtime": self.channel,
            "webhook": self.receiver,
        }[channel]


@dataclass
class Planned:
    """An event to put, and the deliveries it must cause: (channel, address) once each."""

    detail: dict[str, Any]
    deliveries: list[tuple[str, str]]
    user_id: str


@dataclass
class Malformed:
    """A malformed event: which rule it breaks and the words its rejection reason must name."""

    mutation: str
    detail: dict[str, Any]
    names: tuple[str, ...]


# ---------------------------------------------------------------------------------------------
# Figures
# ---------------------------------------------------------------------------------------------


@dataclass
class ScenarioResult:
    scenario: str
    events_put: int
    expected: int
    delivered: int
    lost: int
    doubled: int
    dead_expected: int
    dead_actual: int
    seconds: float
    problems: list[str] = field(default_factory=list)
    notes: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return (
            not self.lost
            and not self.doubled
            and self.dead_expected == self.dead_actual
            and self.delivered == self.expected
            and not self.problems
        )

    @property
    def throughput(self) -> float:
        return self.delivered / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "throughput_per_second": round(self.throughput, 2), "ok": self.ok}


def format_table(results: Sequence[ScenarioResult]) -> str:
    header = (
        "scenario",
        "events put",
        "expected",
        "delivered",
        "lost",
        "doubled",
        "dead-lettered (exp/act)",
        "wall time",
        "deliveries/s",
        "verdict",
    )
    rows = [
        (
            r.scenario,
            str(r.events_put),
            str(r.expected),
            str(r.delivered),
            str(r.lost),
            str(r.doubled),
            f"{r.dead_expected}/{r.dead_actual}",
            f"{r.seconds:.1f} s",
            f"{r.throughput:.1f}",
            "ok" if r.ok else "FAILED",
        )
        for r in results
    ]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    lines = [" | ".join(cell.ljust(w) for cell, w in zip(header, widths, strict=True))]
    lines.append("-|-".join("-" * w for w in widths))
    lines += [" | ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in rows]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# The stack's public surfaces
# ---------------------------------------------------------------------------------------------


class Surfaces:
    """The bus, the sandboxes' control API, and reads of the stack's own queues and tables."""

    def __init__(self, stack: LocalStack) -> None:
        assert stack.sandbox and stack.description and stack.moto
        self.stack = stack
        self.description = stack.description
        self.sandbox_url = stack.sandbox.url
        self.events = stack.client("events")
        self.sqs = stack.client("sqs")
        self.dynamodb = stack.client("dynamodb")
        self.bus = stack.bus_name
        self.users = UserStore(self.dynamodb, self.description.ref("UsersTable"))
        self.email_provider = self.description.parameters.get("EmailProvider", "ses")
        self._outbox_seq = 0
        self._phones = itertools.count(1)  # a number of their own for every seeded user
        self._ses = MotoDataJsonMail(stack.moto.url) if self.email_provider == "ses" else None
        assert stack.api
        self.app = AppClient(stack.api.url, self.sandbox_url)

    # -- the sandboxes' HTTP control API -----------------------------------------------------------
    def http(self, path: str, *, method: str = "GET", body: Any = None) -> tuple[Any, dict[str, str]]:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(
            self.sandbox_url + path, data=data, method=method, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=30) as response:  # loopback only
            text = response.read().decode()
            headers = dict(response.headers.items())
        return (json.loads(text) if text else None), headers

    def new_deliveries(self) -> list[tuple[str, str]]:
        """(channel, address) of every delivery a provider accepted since the last call."""
        entries, _ = self.http(f"/_outbox?since={self._outbox_seq}")
        if entries:
            self._outbox_seq = max(self._outbox_seq, *(int(e["seq"]) for e in entries))
        found = [(e["channel"], str(e.get("recipient") or "").lower()) for e in entries]
        if self._ses is not None:
            found += [("email", a.lower()) for m in self._ses.new_messages() for a in set(m.addresses())]
        return found

    def add_fault(self, provider: str, **spec: Any) -> dict[str, Any]:
        rule, _ = self.http("/_faults", method="POST", body={"provider": provider, **spec})
        return rule

    def fault_hits(self, rule_id: int) -> int:
        """Requests the fault rule `rule_id` has failed so far (0 once it is gone)."""
        rules, _ = self.http("/_faults")
        return sum(int(rule["hits"]) for rule in rules if rule["id"] == rule_id)

    def clear_faults(self, provider: str | None = None) -> None:
        self.http("/_faults" + (f"?provider={provider}" if provider else ""), method="DELETE")

    def add_receiver(self, name: str, secret: str) -> None:
        self.http("/_receivers", method="POST", body={"name": name, "secret": secret})

    def receiver_stats(self) -> dict[str, dict[str, int]]:
        stats, _ = self.http("/_receivers")
        return stats["receivers"]

    def occupy(self, channel: str) -> None:
        """A client subscribes: the sandbox sends Pusher's signed webhook to the HTTP API."""
        answer, _ = self.http("/_pusher/occupy", method="POST", body={"channel": channel})
        webhook = answer.get("webhook") or {}
        if webhook.get("status") != 200:
            raise RuntimeError(f"the presence webhook for {channel} was not accepted: {webhook}")

    # -- the HTTP API, as an app (tokens from the local issuer) -------------------------------------
    def forged_token(self, user_id: str) -> str:
        """A token in `user_id`'s name that the issuer never signed: the issuer's key id, an RSA
        key of our own."""
        jwks, _ = self.http("/.well-known/jwks.json")
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        now = int(time.time())
        claims = {"sub": user_id, "iss": self.sandbox_url, "aud": "herald-api", "iat": now, "exp": now + 600}
        return jwt.encode(claims, key, algorithm="RS256", headers={"kid": jwks["keys"][0]["kid"]})

    def post_raw(self, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, Any]:
        """A raw POST to the HTTP API (a provider's webhook): status and answer (JSON parsed, any
        other body as text: TwiML)."""
        request = urllib.request.Request(self.app.api_url + path, data=body, method="POST", headers=headers)

        def answer(content_type: str, raw: bytes) -> Any:
            return json.loads(raw or b"null") if "json" in content_type else raw.decode()

        try:
            with urllib.request.urlopen(request, timeout=10) as response:  # loopback (the local API)
                return response.status, answer(response.headers.get("Content-Type", ""), response.read())
        except urllib.error.HTTPError as error:
            return error.code, answer(error.headers.get("Content-Type", ""), error.read())

    def put_bus_event(self, detail_type: str, detail: dict[str, Any]) -> None:
        response = self.events.put_events(
            Entries=[
                {
                    "EventBusName": self.bus,
                    "Source": "herald.soak",
                    "DetailType": detail_type,
                    "Detail": json.dumps(detail),
                }
            ]
        )
        if response["FailedEntryCount"]:
            raise RuntimeError(f"PutEvents refused {detail_type}: {response['Entries']}")

    # -- the bus -----------------------------------------------------------------------------------
    def put_events(self, details: Sequence[dict[str, Any]], source: str = "herald.soak") -> list[str]:
        """PutEvents in batches of 10, as a producer would; returns EventBridge's event ids."""
        ids: list[str] = []
        for start in range(0, len(details), PUT_BATCH):
            chunk = details[start : start + PUT_BATCH]
            response = self.events.put_events(
                Entries=[
                    {
                        "EventBusName": self.bus,
                        "Source": source,
                        "DetailType": "NotificationRequested",
                        "Detail": json.dumps(detail),
                    }
                    for detail in chunk
                ]
            )
            if response["FailedEntryCount"]:
                raise RuntimeError(f"PutEvents refused entries: {response['Entries']}")
            ids += [entry["EventId"] for entry in response["Entries"]]
        return ids

    # -- the stack's queues and tables -------------------------------------------------------------
    def in_flight(self) -> int:
        """Messages anywhere in the ingest and channel queues: visible, in flight or delayed."""
        total = 0
        for queue in WORK_QUEUES:
            attributes = self.sqs.get_queue_attributes(
                QueueUrl=self.description.ref(queue),
                AttributeNames=[
                    "ApproximateNumberOfMessages",
                    "ApproximateNumberOfMessagesNotVisible",
                    "ApproximateNumberOfMessagesDelayed",
                ],
            )["Attributes"]
            total += sum(int(v) for v in attributes.values())
        return total

    def drain_dead_letters(self) -> list[dict[str, Any]]:
        """Every message of every DLQ, removed (each scenario starts with empty DLQs)."""
        found: list[dict[str, Any]] = []
        for queue in DEAD_LETTER_QUEUES:
            url = self.description.ref(queue)
            while True:
                messages = self.sqs.receive_message(
                    QueueUrl=url, MaxNumberOfMessages=10, MessageAttributeNames=["All"], VisibilityTimeout=60
                ).get("Messages", [])
                if not messages:
                    break
                for message in messages:
                    attributes = message.get("MessageAttributes", {})
                    try:
                        body = json.loads(message["Body"])
                    except ValueError:
                        body = {}
                    found.append(
                        {
                            "queue": queue,
                            "id": body.get("id") if isinstance(body, dict) else None,
                            "event_id": attributes.get("herald_event_id", {}).get("StringValue"),
                            "reason": attributes.get("herald_rejection_reason", {}).get("StringValue"),
                        }
                    )
                self.sqs.delete_message_batch(
                    QueueUrl=url,
                    Entries=[
                        {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)
                    ],
                )
        return found

    def delivery_log(self, user_id: str) -> list[dict[str, Any]]:
        """Every delivery attempt the notification records of `user_id` hold."""
        response = self.dynamodb.query(
            TableName=self.description.ref("NotificationsTable"),
            KeyConditionExpression="user_id = :u",
            ExpressionAttributeValues={":u": {"S": user_id}},
            ConsistentRead=True,
        )
        records = [from_attributes(item) for item in response.get("Items", [])]
        return [entry for record in records for entry in record.get("delivery_log", [])]

    def records(self, user_id: str) -> list[dict[str, Any]]:
        """The notification records of `user_id` (deliveries, delivery log)."""
        response = self.dynamodb.query(
            TableName=self.description.ref("NotificationsTable"),
            KeyConditionExpression="user_id = :u",
            ExpressionAttributeValues={":u": {"S": user_id}},
            ConsistentRead=True,
        )
        return [from_attributes(item) for item in response.get("Items", [])]

    def suppressed(self, *addresses: str) -> list[str]:
        """Which of these suppression keys have an entry."""
        table = self.description.ref("SuppressionTable")
        return [
            address
            for address in addresses
            if "Item" in self.dynamodb.get_item(TableName=table, Key={"address": {"S": address}})
        ]

    # -- seeding (as `make demo` does) -------------------------------------------------------------
    def seed(self, prefix: str, kinds: Sequence[Kind], webhook_secret: str) -> list[Recipient]:
        """One user per entry of `kinds`, set up so that its kind's channels are the ones chosen."""
        recipients = []
        for index, kind in enumerate(kinds):
            user_id = f"{prefix}-{index}"
            recipient = Recipient(
                user_id=user_id,
                email=f"{user_id}@example.com",
                phone=f"+1415{next(self._phones):07d}",
                token=f"token-{user_id}",
                channel=f"private-user-{user_id}",
                receiver=user_id,
            )
            if kind.webhook:
                self.add_receiver(recipient.receiver, webhook_secret)
            self.users.put_profile(
                UserProfile(
                    user_id=user_id,
                    email=recipient.email if kind.email else None,
                    phone=recipient.phone if kind.phone else None,
                    devices={recipient.token: DEVICE} if kind.device else {},
                    preferences={"marketing_opt_in": kind.marketing_opt_in},
                    webhook=(
                        {
                            "url": f"{self.sandbox_url}/receivers/{recipient.receiver}",
                            "secret_name": WEBHOOK_SECRET_NAME,
                        }
                        if kind.webhook
                        else None
                    ),
                )
            )
            if kind.online:
                self.occupy(recipient.channel)  # Pusher's signed webhook tells Herald
            recipients.append(recipient)
        return recipients


# ---------------------------------------------------------------------------------------------
# Malformed events (hypothesis)
# ---------------------------------------------------------------------------------------------

EVENT_ID = re.compile(r"[A-Za-z0-9_.:-]{1,128}")
TYPE_NAME = re.compile(r"[a-z][a-z0-9_]{0,63}")
LOCALE = re.compile(r"[a-z]{2,3}(-[A-Za-z0-9]{2,8})*")
FIELDS = frozenset({"event_id", "type", "user_id", "audience", "data", "urgency", "locale", "send_at"})
URGENCIES = ("critical", "high", "medium", "low", "system")
# (type, urgency) overrides the routing rules refuse: system urgency is for system types only,
# and marketing is low or medium.
REFUSED_OVERRIDES = [
    *(
        (t, "system")
        for t in ("security_alert", "payment_receipt", "order_shipped", "comment_reply", "marketing_promo")
    ),
    *(("order_webhook", u) for u in ("critical", "high", "medium", "low")),
    ("marketing_promo", "critical"),
    ("marketing_promo", "high"),
]


def malformed_strategy(valid: Callable[[int], dict[str, Any]]) -> Any:
    """A hypothesis strategy of `Malformed` events, each breaking one rule of the producer contract
    (docs/contracts.md): built from a valid event (`valid(i)`) by one mutation."""
    from hypothesis import strategies as st

    catalog = load_catalog()
    not_a_string = st.one_of(
        st.none(),
        st.integers(),
        st.booleans(),
        st.floats(allow_nan=False, allow_infinity=False),
        st.lists(st.integers(), max_size=3),
        st.dictionaries(st.text(max_size=5), st.integers(), max_size=2),
    )
    base = st.integers(min_value=0, max_value=10_000).map(valid)

    def mutated(
        name: str, change: Callable[[dict[str, Any], Any], dict[str, Any]], value: Any, *names: str
    ) -> Any:
        def build(pair: tuple[dict[str, Any], Any]) -> Malformed:
            detail, drawn = pair
            changed = change(dict(detail), drawn)
            expected = tuple(n.format(value=drawn) for n in names)
            return Malformed(name, changed, expected)

        return st.tuples(base, value).map(build)

    def put(key: str) -> Callable[[dict[str, Any], Any], dict[str, Any]]:
        return lambda detail, value: {**detail, key: value}

    def drop(key: str) -> Callable[[dict[str, Any], Any], dict[str, Any]]:
        return lambda detail, _: {k: v for k, v in detail.items() if k != key}

    bad_event_id = st.one_of(
        not_a_string,
        st.just(""),
        st.text(min_size=1, max_size=40).filter(lambda s: not EVENT_ID.fullmatch(s)),
        st.text(alphabet="abc123", min_size=129, max_size=140),
    )
    bad_type_name = st.one_of(
        not_a_string,
        st.just(""),
        st.text(min_size=1, max_size=30).filter(lambda s: not TYPE_NAME.fullmatch(s)),
    )
    unknown_type = st.from_regex(r"[a-z][a-z0-9_]{0,30}", fullmatch=True).filter(
        lambda s: s not in catalog.types
    )
    bad_locale = st.one_of(st.integers(), st.text(max_size=12).filter(lambda s: not LOCALE.fullmatch(s)))
    bad_send_at = st.one_of(
        st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1)).map(
            lambda d: d.isoformat()
        ),  # no time zone
        st.sampled_from(["soon", "tomorrow at noon", "2026-13-45T00:00:00Z", "", "31/12/2026"]),
        st.lists(st.integers(), max_size=2),
    )
    extra_field = st.from_regex(r"[a-z][a-z_]{2,15}", fullmatch=True).filter(lambda s: s not in FIELDS)

    def without_data(detail: dict[str, Any], fields: Any) -> dict[str, Any]:
        data = dict(detail["data"])
        for name, blank in fields:
            if blank == "drop":
                data.pop(name, None)
            else:
                data[name] = blank
        return {**detail, "data": data}

    def missing_data() -> Any:
        def for_detail(detail: dict[str, Any]) -> Any:
            required = sorted(catalog.entry(detail["type"]).required_data)
            fields = st.lists(
                st.tuples(st.sampled_from(required), st.sampled_from(["drop", None, ""])),
                min_size=1,
                max_size=len(required),
                unique_by=lambda pair: pair[0],
            )
            return fields.map(
                lambda chosen: Malformed(
                    "missing required data",
                    without_data(detail, chosen),
                    tuple(sorted(name for name, _ in chosen)),
                )
            )

        return base.flatmap(for_detail)

    def refused_override() -> Any:
        def build(pair: tuple[int, tuple[str, str]]) -> Malformed:
            index, (type_name, urgency) = pair
            detail = valid(index)
            sample = dict(catalog.entry(type_name).sample_data)
            return Malformed(
                "urgency the type cannot take",
                {**detail, "type": type_name, "data": sample, "urgency": urgency},
                ("urgency",),
            )

        return st.tuples(st.integers(min_value=0, max_value=10_000), st.sampled_from(REFUSED_OVERRIDES)).map(
            build
        )

    return st.one_of(
        mutated("no event_id", drop("event_id"), st.none(), "event_id"),
        mutated("event_id not a valid id", put("event_id"), bad_event_id, "event_id"),
        mutated("no type", drop("type"), st.none(), "type"),
        mutated("type not a type name", put("type"), bad_type_name, "type"),
        mutated("unknown type", put("type"), unknown_type, "{value}"),
        mutated("no recipient", drop("user_id"), st.none(), "user_id"),
        mutated(
            "user_id not a string", put("user_id"), not_a_string.filter(lambda v: v is not None), "user_id"
        ),
        mutated(
            "user_id and audience",
            put("audience"),
            st.from_regex(r"[a-z]{1,10}", fullmatch=True).map(lambda role: {"role": role}),
            "audience",
        ),
        mutated(
            "data not an object", put("data"), not_a_string.filter(lambda v: not isinstance(v, dict)), "data"
        ),
        missing_data(),
        mutated(
            "urgency not an urgency",
            put("urgency"),
            st.one_of(st.integers(), st.text(max_size=12).filter(lambda s: s not in URGENCIES)),
            "urgency",
        ),
        refused_override(),
        mutated("unknown field", lambda d, key: {**d, key: "x"}, extra_field, "{value}"),
        mutated("locale not a locale", put("locale"), bad_locale, "locale"),
        mutated("send_at not a moment", put("send_at"), bad_send_at, "send_at"),
    )


def draw_malformed(count: int, valid: Callable[[int], dict[str, Any]], seed: int) -> list[Malformed]:
    """`count` malformed events drawn by hypothesis (reproducible for a given seed)."""
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import seed as hypothesis_seed

    drawn: list[Malformed] = []

    @hypothesis_seed(seed)
    @settings(
        max_examples=count,
        database=None,
        phases=[Phase.generate],
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(malformed_strategy(valid))
    def collect(example: Malformed) -> None:
        drawn.append(example)

    collect()
    return drawn[:count]


# ---------------------------------------------------------------------------------------------
# The suite
# ---------------------------------------------------------------------------------------------


@dataclass
class Config:
    burst: int = 5000
    duplicates: int = 100
    copies: int = 5
    outage_events: int = 20
    outage_seconds: float = 8.0
    poison: int = 100
    poison_neighbours: int = 100
    cross_user: int = 5
    presence_webhooks: int = 5
    feedback_webhooks: int = 5
    broadcast: int = 10_000
    seed: int = 7
    grace_seconds: float = 3.0
    quiet_polls: int = 3
    scenarios: tuple[str, ...] = (
        "burst",
        "duplicates",
        "outage",
        "poison",
        "cross_user",
        "presence_webhooks",
        "feedback_webhooks",
        "broadcast",
    )


class Soak:
    """Plays the scenarios on a running stack and judges them by what the providers received."""

    def __init__(self, stack: LocalStack, config: Config | None = None) -> None:
        self.stack = stack
        self.config = config or Config()
        self.surfaces = Surfaces(stack)
        self.catalog = load_catalog()
        self.random = random.Random(self.config.seed)
        self._webhook_secret = f"whsec_soak_{self.random.getrandbits(128):032x}"
        webhook_sender = self.surfaces.description.functions["WebhookSenderFunction"]
        self.stack.client("secretsmanager").create_secret(
            Name=webhook_sender.environment["WEBHOOK_SECRET_PREFIX"] + WEBHOOK_SECRET_NAME,
            SecretString=json.dumps({"secret": self._webhook_secret}),
        )
        self.surfaces.drain_dead_letters()

    # -- building blocks ---------------------------------------------------------------------------
    def plan(self, prefix: str, kinds: Sequence[Kind]) -> list[Planned]:
        """Seed one user per kind and the event each one gets, with the deliveries it must cause."""
        recipients = self.surfaces.seed(prefix, kinds, self._webhook_secret)
        planned = []
        for index, (kind, recipient) in enumerate(zip(kinds, recipients, strict=True)):
            data = self._sample(kind)
            detail = {
                "event_id": f"{prefix}-e{index}",
                "type": kind.type,
                "user_id": recipient.user_id,
                "data": data,
            }
            deliveries = [(channel, recipient.address(channel).lower()) for channel in kind.channels]
            planned.append(Planned(detail, deliveries, recipient.user_id))
        return planned

    def _sample(self, kind: Kind) -> dict[str, Any]:
        """The catalog's sample data of the kind's type (it holds every required field)."""
        return dict(self.catalog.entry(kind.type).sample_data)

    def mix(self, count: int) -> list[Kind]:
        """`count` kinds, round robin over every kind (so every channel is exercised)."""
        return [KINDS[i % len(KINDS)] for i in range(count)]

    def settle(
        self, expected: Counter[tuple[str, str]], timeout: float
    ) -> tuple[Counter[tuple[str, str]], float]:
        """Collect deliveries until every expected one arrived and the queues are empty (or
        nothing is left in flight, or `timeout`); then wait `grace_seconds` for late doubles.
        Returns what arrived and when the system settled (monotonic)."""
        seen: Counter[tuple[str, str]] = Counter()
        deadline = time.monotonic() + timeout
        quiet = 0
        total = sum(expected.values())
        next_depth_check = time.monotonic() + QUIET_CHECK_SECONDS
        while time.monotonic() < deadline:
            seen.update(self.surfaces.new_deliveries())
            arrived = sum(min(seen[key], count) for key, count in expected.items())
            if arrived >= total or time.monotonic() >= next_depth_check:
                # Queue depths cost moto calls: read them when all arrived, else now and then.
                next_depth_check = time.monotonic() + QUIET_CHECK_SECONDS
                idle = self.surfaces.in_flight() == 0
                quiet = quiet + 1 if idle else 0
                if (arrived >= total and idle) or quiet >= self.config.quiet_polls:
                    break
            time.sleep(POLL_SECONDS)
        settled = time.monotonic()
        time.sleep(self.config.grace_seconds)
        seen.update(self.surfaces.new_deliveries())
        return seen, settled

    def judge(
        self,
        scenario: str,
        events_put: int,
        expected: Counter[tuple[str, str]],
        seen: Counter[tuple[str, str]],
        seconds: float,
        dead_expected: int,
        dead: list[dict[str, Any]],
    ) -> ScenarioResult:
        lost = sum(max(0, count - seen[key]) for key, count in expected.items())
        doubled = sum(max(0, seen[key] - count) for key, count in expected.items())
        delivered = sum(min(seen[key], count) for key, count in expected.items())
        problems = []
        unexpected = sorted(key for key in seen if key not in expected)
        if unexpected:
            problems.append(f"{len(unexpected)} delivery(ies) nobody expected, e.g. {unexpected[:3]}")
        if lost:
            missing = sorted(key for key, count in expected.items() if seen[key] < count)
            problems.append(f"{lost} lost, e.g. {missing[:3]}")
        if doubled:
            twice = sorted(key for key, count in expected.items() if seen[key] > count)
            problems.append(f"{doubled} sent more than once, e.g. {twice[:3]}")
        return ScenarioResult(
            scenario=scenario,
            events_put=events_put,
            expected=sum(expected.values()),
            delivered=delivered,
            lost=lost,
            doubled=doubled,
            dead_expected=dead_expected,
            dead_actual=len(dead),
            seconds=round(seconds, 2),
            problems=problems,
        )

    def _timeout(self, deliveries: int) -> float:
        return 120.0 + deliveries * 0.5

    # -- scenarios ---------------------------------------------------------------------------------
    def burst(self, count: int) -> ScenarioResult:
        seeding = time.monotonic()
        planned = self.plan("burst", self.mix(count))
        seeded = time.monotonic() - seeding
        self.random.shuffle(planned)
        expected = Counter(d for p in planned for d in p.deliveries)
        started = time.monotonic()
        self.surfaces.put_events([p.detail for p in planned])
        put_seconds = time.monotonic() - started
        seen, settled = self.settle(expected, self._timeout(len(expected)))
        dead = self.surfaces.drain_dead_letters()
        result = self.judge("burst", len(planned), expected, seen, settled - started, 0, dead)
        result.notes = {
            "users": len(planned),
            "by_channel": dict(Counter(channel for channel, _ in expected.elements())),
            "seeding_seconds": round(seeded, 1),
            "put_seconds": round(put_seconds, 1),
            **self._webhook_resends(),
        }
        self._dead_letter_problems(result, dead)
        return result

    def duplicate_storm(self, count: int, copies: int) -> ScenarioResult:
        assert self.stack.runner
        planned = self.plan("dup", self.mix(count))
        expected = Counter(d for p in planned for d in p.deliveries)
        details = [p.detail for p in planned for _ in range(copies)]
        self.random.shuffle(details)
        redelivered_before = self.stack.runner.forced_redeliveries
        self.stack.runner.force_redelivery(WORK_QUEUES)
        try:
            started = time.monotonic()
            self.surfaces.put_events(details)
            seen, settled = self.settle(expected, self._timeout(len(details)))
        finally:
            self.stack.runner.force_redelivery(())
        dead = self.surfaces.drain_dead_letters()
        result = self.judge(
            f"duplicates ({copies}x + redelivery)", len(details), expected, seen, settled - started, 0, dead
        )
        result.notes = {
            "distinct_events": len(planned),
            "copies": copies,
            "forced_redelivery": list(WORK_QUEUES),
            "messages_redelivered": self.stack.runner.forced_redeliveries - redelivered_before,
            **self._webhook_resends(),
        }
        self._dead_letter_problems(result, dead)
        return result

    def outage(self, provider: str, count: int, seconds: float) -> ScenarioResult:
        """`provider` answers 503 to everything for `seconds` (many backoff steps), then recovers."""
        channel = PROVIDER_CHANNEL[provider]
        planned = self.plan(f"out-{provider}", [KIND_BY_CHANNEL[channel]] * count)
        expected = Counter(d for p in planned for d in p.deliveries)
        rule = self.surfaces.add_fault(provider, status=503)
        started = time.monotonic()
        self.surfaces.put_events([p.detail for p in planned])
        during: Counter[tuple[str, str]] = Counter()
        while time.monotonic() < started + seconds:
            during.update(self.surfaces.new_deliveries())
            time.sleep(POLL_SECONDS)
        refused = self.surfaces.fault_hits(rule["id"])
        self.surfaces.clear_faults(provider)
        seen, settled = self.settle(expected, self._timeout(len(expected)))
        seen.update(during)
        dead = self.surfaces.drain_dead_letters()
        result = self.judge(
            f"outage: {provider} ({seconds:g} s of 503)", count, expected, seen, settled - started, 0, dead
        )
        failed_attempts = []
        for p in planned:
            log = [e for e in self.surfaces.delivery_log(p.user_id) if e.get("channel") == channel]
            failed_attempts.append(sum(1 for e in log if e.get("outcome") == "retry"))
        result.notes = {
            "provider": provider,
            "channel": channel,
            "outage_seconds": seconds,
            "requests_refused_by_the_provider": refused,
            f"{channel}_delivered_during_the_outage": sum(n for (c, _), n in during.items() if c == channel),
            "notifications_with_failed_attempts": sum(1 for n in failed_attempts if n),
            "most_failed_attempts_of_one": max(failed_attempts, default=0),
            **self._webhook_resends(),
        }
        if not refused:
            result.problems.append(f"{provider} refused nothing: the outage was never met")
        self._dead_letter_problems(result, dead)
        return result

    def poison(self, bad: int, good: int) -> ScenarioResult:
        planned = self.plan("poison", self.mix(good))
        # Each malformed event starts as a valid one (a neighbour's, or one for a user not seeded).
        models = [p.detail for p in planned] or [
            {"event_id": "poison", "type": k.type, "user_id": "nobody", "data": self._sample(k)}
            for k in KINDS
        ]
        malformed = draw_malformed(bad, lambda i: dict(models[i % len(models)]), self.config.seed)
        for index, item in enumerate(malformed):
            item.detail = self._own_event_id(item, index)
        entries: list[tuple[str, Any]] = [("good", p) for p in planned] + [("bad", m) for m in malformed]
        self.random.shuffle(entries)
        expected = Counter(d for p in planned for d in p.deliveries)
        started = time.monotonic()
        ids = self.surfaces.put_events([item.detail for _, item in entries])
        seen, settled = self.settle(expected, self._timeout(len(expected)))
        dead = self.surfaces.drain_dead_letters()
        result = self.judge("poison", len(entries), expected, seen, settled - started, len(malformed), dead)
        by_id = {d["id"]: d for d in dead}
        wrong: list[str] = []
        for event_id, (label, item) in zip(ids, entries, strict=True):
            if label != "bad":
                if event_id in by_id:
                    reason = by_id[event_id]["reason"]
                    wrong.append(f"valid event {item.detail['event_id']} was dead-lettered: {reason}")
                continue
            letter = by_id.get(event_id)
            if letter is None:
                wrong.append(f"{item.mutation}: not in the ingest DLQ ({json.dumps(item.detail)[:200]})")
            elif letter["queue"] != "IngestDeadLetterQueue" or not letter["reason"]:
                wrong.append(f"{item.mutation}: in {letter['queue']} without a reason")
            elif not all(name.lower() in letter["reason"].lower() for name in item.names):
                wrong.append(f"{item.mutation}: reason {letter['reason']!r} does not name {list(item.names)}")
        result.problems += wrong
        batches = [entries[i : i + PUT_BATCH] for i in range(0, len(entries), PUT_BATCH)]
        result.notes = {
            "malformed": len(malformed),
            "valid_neighbours": len(planned),
            "mixed_batches": sum(1 for b in batches if {label for label, _ in b} == {"good", "bad"}),
            "mutations": dict(Counter(m.mutation for m in malformed)),
            "reasons_checked": len(malformed) - len([w for w in wrong if not w.startswith("valid")]),
            "sample_reasons": sorted({d["reason"] for d in dead if d["reason"]})[:5],
        }
        return result

    def cross_user(self, people: int) -> ScenarioResult:
        """`people` targets, each set up through the bus and the API with a delivered notification;
        an attacker then tries every `/v1/me` route on each. Judged by the answers and by each
        target's export before and after."""
        started = time.monotonic()
        app = self.surfaces.app
        targets = [f"xu-{i}" for i in range(people)]
        tokens = {user: f"xu-device-{user}-{'k' * 100}" for user in targets}
        for user in targets:
            self.surfaces.put_bus_event(
                "UserUpserted", {"user_id": user, "version": 1, "email": f"{user}@example.com"}
            )
            app.put(f"/v1/me/devices/{tokens[user]}", user=user, json_body={"platform": "ios"})
            app.put("/v1/me/preferences", user=user, json_body={"time_zone": "Europe/Lisbon"})
            app.put(
                "/v1/me/contacts",
                user=user,
                json_body={
                    "phone": "+351912345678",
                    "sms_marketing": {"granted": True, "wording_version": "v1"},
                },
            )
        sample = self._sample(OFFLINE)
        self.surfaces.put_events(
            [
                {"event_id": f"xu-e-{user}", "type": OFFLINE.type, "user_id": user, "data": sample}
                for user in targets
            ]
        )
        inbox: dict[str, str] = {}  # each target's notification, once pushed (nothing moves after)
        deadline = time.monotonic() + self._timeout(people)
        while len(inbox) < people and time.monotonic() < deadline:
            for user in sorted(set(targets) - set(inbox)):
                records = self._exported(user)["notifications"]
                if records and records[0].get("deliveries", {}).get("push", {}).get("state") == "sent":
                    inbox[user] = records[0]["notification_id"]
            time.sleep(POLL_SECONDS)
        problems = [
            f"{user}: its notification never reached the inbox" for user in targets if user not in inbox
        ]
        before = {user: self._exported(user) for user in targets}

        attacker = "xu-attacker"
        attempts = refused = 0
        for user in targets:
            for name, answer in self._attacks(
                attacker, user, inbox.get(user, "ntf-" + "0" * 32), tokens[user]
            ):
                attempts += 1
                text = json.dumps(answer.body)
                leaked = [
                    secret
                    for secret in (user, tokens[user], inbox.get(user, ""))
                    if secret and secret in text
                ]
                if answer.status in (401, 404, 422) or (answer.ok and not leaked):
                    refused += 1
                else:
                    problems.append(f"{name} on {user}: {answer.status}, leaked {leaked}")
        for user in targets:
            after = self._exported(user)
            if after != before[user]:
                changed = sorted(k for k in after if after[k] != before[user].get(k))
                problems.append(f"{user}: {changed} changed by another person's requests")
        return self._refusals(
            "cross_user",
            attempts,
            refused,
            problems,
            started,
            targets=people,
            refused_or_about_the_caller_only=refused,
        )

    def presence_webhooks(self, people: int) -> ScenarioResult:
        """Pusher's webhooks attacked: for each person, the sandbox's genuine "occupied" webhook is
        captured, the person leaves ("vacated"), then the captured body is replayed byte for byte,
        re-signed with the wrong key, tampered, signed with another secret, and sent stale (6 min
        old). Every forged one must be refused (401), the replay must change nothing, and every
        person must end offline."""
        started = time.monotonic()
        problems: list[str] = []
        attempts = refused = 0
        credentials = self.stack.sandbox.credentials.pusher if self.stack.sandbox else None
        assert credentials is not None
        for index in range(people):
            channel = f"private-user-pw-{index}"
            self.surfaces.occupy(channel)
            captured = self.surfaces.http("/_pusher/webhooks")[0][-1]
            self.surfaces.http("/_pusher/vacate", method="POST", body={"channel": channel})
            body = captured["request_body"].encode()
            headers = dict(captured["request_headers"])
            stale_body = json.dumps(
                {
                    "time_ms": int(time.time() * 1000) - 6 * 60 * 1000,
                    "events": [{"name": "channel_occupied", "channel": channel}],
                }
            ).encode()
            forged = {
                "replayed": (body, headers, 200),
                "wrong key": (body, {**headers, "X-Pusher-Key": "not-the-app-key"}, 401),
                "tampered": (body.replace(b"occupied", b"occupied "), headers, 401),
                "other secret": (body, {**headers, "X-Pusher-Signature": _hmac("not-the-secret", body)}, 401),
                "stale": (
                    stale_body,
                    {**headers, "X-Pusher-Signature": _hmac(credentials.secret, stale_body)},
                    401,
                ),
            }
            for name, (sent, sent_headers, expected) in forged.items():
                attempts += 1
                status, answer = self.surfaces.post_raw("/v1/webhooks/pusher", sent, sent_headers)
                if status == expected and (expected != 200 or answer.get("applied") == 0):
                    refused += 1
                else:
                    problems.append(f"{name} webhook for {channel}: {status} {answer}")
            presence = self._exported(f"pw-{index}").get("presence") or {}
            if presence.get("occupied") is not False:
                problems.append(f"{channel}: presence {presence} after the attacks, expected vacated")
        return self._refusals(
            "presence_webhooks",
            attempts,
            refused,
            problems,
            started,
            people=people,
            refused_or_without_effect=refused,
        )

    def feedback_webhooks(self, people: int) -> ScenarioResult:
        """SendGrid's and Twilio's callbacks attacked. For each person a critical notification goes
        out by email (SendGrid) and SMS (Twilio); the SendGrid sandbox's genuine signed `delivered`
        batch and the Twilio sandbox's genuine `sent` and `delivered` callbacks are captured. Then:
        SendGrid — the batch replayed byte for byte (200, nothing moved), tampered, signed with
        another key, unsigned, and re-signed with SendGrid's key over a timestamp 6 minutes old
        (each 401); Twilio — the `delivered` callback replayed and the older `sent` one replayed
        late (204, nothing moved), its parameters tampered, signed with another auth token, moved
        onto another notification's URL, unsigned (each 401), and an inbound START replayed after a
        later STOP (200, the phone stays opted out; a genuine START then opts it back in). Every
        person must end with both channels `delivered` and neither address suppressed."""
        started = time.monotonic()
        problems: list[str] = []
        attempts = refused = 0
        credentials = self.stack.sandbox.credentials if self.stack.sandbox else None
        assert credentials is not None
        planned = self.plan("fw", [CRITICAL] * people)
        expected = Counter(d for p in planned for d in p.deliveries)
        self.surfaces.put_events([p.detail for p in planned])
        self.settle(expected, self._timeout(len(expected)))
        sendgrid_signature = "X-Twilio-Email-Event-Webhook-Signature"
        sendgrid_timestamp = "X-Twilio-Email-Event-Webhook-Timestamp"
        api = self.surfaces.app.api_url
        for p in planned:
            user = p.user_id
            email, phone = dict(p.deliveries)["email"], dict(p.deliveries)["sms"]
            batch = self._sendgrid_batch(user)
            record = self._record_when(user, email="delivered")
            if batch is None or record is None:
                problems.append(f"{user}: no genuine SendGrid delivered batch applied")
                continue
            sent, delivered = self._twilio_callbacks(phone)
            record = self._record_when(user, email="delivered", sms="delivered")
            if sent is None or delivered is None or record is None:
                problems.append(f"{user}: no genuine Twilio callbacks applied")
                continue
            before = record
            body = batch["request_body"].encode()
            headers = dict(batch["request_headers"])
            stamp = str(int(time.time()) - 6 * 60)
            stale = credentials.sendgrid.event_webhook_private_key.sign(
                stamp.encode() + body, ec.ECDSA(hashes.SHA256())
            )
            stranger = ec.generate_private_key(ec.SECP256R1()).sign(
                headers[sendgrid_timestamp].encode() + body, ec.ECDSA(hashes.SHA256())
            )
            unsigned = {k: v for k, v in headers.items() if k not in (sendgrid_signature, sendgrid_timestamp)}
            sendgrid: dict[str, tuple[bytes, dict[str, str], int]] = {
                "replayed": (body, headers, 200),
                "tampered": (body.replace(b'"delivered"', b'"spamreport"'), headers, 401),
                "other key": (body, {**headers, sendgrid_signature: base64_text(stranger)}, 401),
                "unsigned": (body, unsigned, 401),
                "stale": (
                    body,
                    {**headers, sendgrid_signature: base64_text(stale), sendgrid_timestamp: stamp},
                    401,
                ),
            }
            for name, (sent_body, sent_headers, want) in sendgrid.items():
                attempts += 1
                status, answer = self.surfaces.post_raw("/v1/webhooks/sendgrid", sent_body, sent_headers)
                if status == want and (want != 200 or answer.get("moved") == 0):
                    refused += 1
                else:
                    problems.append(f"SendGrid {name} for {user}: {status} {answer}")
            callback = str(delivered["url"])
            path = callback[len(api) :]
            params = dict(urllib.parse.parse_qsl(delivered["request_body"], keep_blank_values=True))
            form = {"Content-Type": "application/x-www-form-urlencoded"}
            signature = dict(delivered["request_headers"])["X-Twilio-Signature"]
            tampered = {**params, "MessageStatus": "undelivered", "ErrorCode": "30006"}
            payload = callback + "".join(k + params[k] for k in sorted(params))
            guessed = hmac.new(b"not-the-auth-token", payload.encode(), hashlib.sha1).digest()
            elsewhere = path.replace(
                f"notification_id={before['notification_id']}", "notification_id=ntf-" + "0" * 32
            )
            encode = urllib.parse.urlencode
            twilio: dict[str, tuple[str, bytes, dict[str, str], int]] = {
                "replayed": (path, encode(params).encode(), {**form, "X-Twilio-Signature": signature}, 204),
                "replayed late": (
                    path,
                    sent["request_body"].encode(),
                    {**form, "X-Twilio-Signature": dict(sent["request_headers"])["X-Twilio-Signature"]},
                    204,
                ),
                "tampered": (path, encode(tampered).encode(), {**form, "X-Twilio-Signature": signature}, 401),
                "other token": (
                    path,
                    encode(params).encode(),
                    {**form, "X-Twilio-Signature": base64_text(guessed)},
                    401,
                ),
                "other notification": (
                    elsewhere,
                    encode(params).encode(),
                    {**form, "X-Twilio-Signature": signature},
                    401,
                ),
                "unsigned": (path, encode(tampered).encode(), form, 401),
            }
            for name, (sent_path, sent_body, sent_headers, want) in twilio.items():
                attempts += 1
                status, answer = self.surfaces.post_raw(sent_path, sent_body, sent_headers)
                if status == want:
                    refused += 1
                else:
                    problems.append(f"Twilio {name} for {user}: {status} {answer}")
            # an inbound START captured on the way, replayed after a later STOP: same answer, still out
            texts = self.stack.sandbox.twilio
            start = texts.send_inbound(phone, "START")
            texts.send_inbound(phone, "STOP")
            attempts += 1
            status, answer = self.surfaces.post_raw(
                start.url[len(api) :], start.request_body.encode(), dict(start.request_headers)
            )
            if status == 200 and self.surfaces.suppressed(sms_address(phone)):
                refused += 1
            else:
                problems.append(f"Twilio replayed START for {user}: {status} {answer}, opted back in")
            texts.send_inbound(phone, "START")  # genuinely back in
            after = self._record_when(user, email="delivered", sms="delivered")
            if after is None or after["deliveries"] != before["deliveries"]:
                problems.append(f"{user}: deliveries moved by the attacks: {after and after['deliveries']}")
            suppressed = self.surfaces.suppressed(email_address(email), sms_address(phone))
            if suppressed:
                problems.append(f"{user}: suppressed by the attacks: {suppressed}")
        return self._refusals(
            "feedback_webhooks",
            attempts,
            refused,
            problems,
            started,
            people=people,
            refused_or_without_effect=refused,
        )

    def broadcast(self, people: int) -> ScenarioResult:
        """One role broadcast (issue 12) to `people` seeded members, one in ten of whom muted the
        type: every other member gets exactly one push, each muted one a record `skipped` with the
        reason, nobody anything twice. Measures the functions' AWS calls per recipient and the push
        sender's batches (runner.measured)."""
        role = f"soak-audience-{self.random.getrandbits(32):08x}"
        type_name = "order_shipped"
        profiles, eligible, muted = [], [], []
        for index in range(people):
            user_id = f"broadcast-{index}"
            mutes = index % BROADCAST_MUTED_EVERY == 0
            (muted if mutes else eligible).append(user_id)
            profiles.append(
                UserProfile(
                    user_id=user_id,
                    roles=frozenset({role}),
                    devices={f"token-{user_id}": DEVICE},
                    preferences={"muted_types": [type_name]} if mutes else {},
                )
            )
        seeding = time.monotonic()
        self.surfaces.users.put_profiles(profiles)
        seeded = time.monotonic() - seeding
        expected = Counter(("push", f"token-{user_id}".lower()) for user_id in eligible)
        event_id = f"broadcast-{self.random.getrandbits(32):08x}"
        assert self.stack.runner is not None
        with self.stack.runner.measured() as log:
            started = time.monotonic()
            detail = {"event_id": event_id, "type": type_name, "audience": {"role": role}}
            self.surfaces.put_events([detail | {"data": dict(self.catalog.entry(type_name).sample_data)}])
            seen, settled = self.settle(expected, self._timeout(len(expected)))
        dead = self.surfaces.drain_dead_letters()
        result = self.judge("broadcast", 1, expected, seen, settled - started, 0, dead)
        skipped = self._skipped_with_reason(event_id, muted, f"user muted {type_name} notifications")
        if skipped != len(muted):
            result.problems.append(
                f"{len(muted) - skipped} muted member(s) not recorded as skipped with the reason"
            )
        calls = {fn: sum(log.calls_of(fn).values()) for fn in ("RouterFunction", "PushSenderFunction")}
        batches = sorted(i.seconds for i in log.invocations if i.function == "PushSenderFunction")
        result.notes = {
            "people": people,
            "eligible": len(eligible),
            "skipped_with_reason": skipped,
            "seeding_seconds": round(seeded, 1),
            "aws_calls_per_person": {fn: round(n / max(1, people), 2) for fn, n in calls.items()},
            "aws_calls_by_operation": {
                fn: dict(sorted(log.calls_of(fn).items())) for fn in ("RouterFunction", "PushSenderFunction")
            },
            "router_invocations": sum(1 for i in log.invocations if i.function == "RouterFunction"),
            "push_batches": len(batches),
            "push_batch_seconds": {
                "median": round(batches[len(batches) // 2], 3) if batches else None,
                "p95": round(batches[int(len(batches) * 0.95)], 3) if batches else None,
                "max": round(batches[-1], 3) if batches else None,
            },
        }
        self._dead_letter_problems(result, dead)
        return result

    def _skipped_with_reason(self, event_id: str, user_ids: Sequence[str], reason: str) -> int:
        """How many of these members' notifications were recorded skipped, naming `reason`."""
        table = self.surfaces.description.ref("NotificationsTable")
        keys = [{"user_id": u, "notification_id": notification_id_for(f"{event_id}#{u}")} for u in user_ids]
        found = batch_get(self.surfaces.dynamodb, {table: keys}, consistent=True)[table]
        return sum(
            1
            for record in found
            if record.get("status") == "skipped"
            and any(step.get("reason") == reason for step in record.get("decision") or [])
        )

    def _sendgrid_batch(self, user: str, timeout: float = 30.0) -> dict[str, Any] | None:
        """The SendGrid sandbox's posted batch holding `user`'s `delivered` event (as captured)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            posted, _ = self.surfaces.http("/_sendgrid/events")
            for delivery in posted:
                events = json.loads(delivery["request_body"] or "[]")
                if delivery.get("status") == 200 and any(
                    e.get("user_id") == user and e.get("event") == "delivered" for e in events
                ):
                    return delivery
            time.sleep(POLL_SECONDS)
        return None

    def _twilio_callbacks(self, phone: str) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
        """The Twilio sandbox's genuine `sent` then `delivered` callbacks for the SMS to `phone`."""
        entries, _ = self.surfaces.http(
            "/_outbox?" + urllib.parse.urlencode({"provider": "twilio", "recipient": phone})
        )
        if not entries:
            return None, None
        sid = entries[-1]["provider_id"]
        found = []
        for status in ("sent", "delivered"):
            delivery, _ = self.surfaces.http(
                "/_twilio/status_callback", method="POST", body={"sid": sid, "status": status}
            )
            found.append(delivery if delivery.get("status") == 204 else None)
        return found[0], found[1]

    def _record_when(self, user: str, timeout: float = 30.0, **states: str) -> dict[str, Any] | None:
        """The person's one notification record once its channels are in `states`."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for record in self.surfaces.records(user):
                deliveries = record.get("deliveries") or {}
                if all((deliveries.get(c) or {}).get("state") == s for c, s in states.items()):
                    return record
            time.sleep(POLL_SECONDS)
        return None

    def _refusals(
        self, scenario: str, attempts: int, refused: int, problems: list[str], started: float, **notes: Any
    ) -> ScenarioResult:
        """A scenario of attempts that must all be refused (or be without effect): the table's
        "delivered" counts the refusals, "lost" would count an attempt that got through."""
        result = ScenarioResult(
            scenario=scenario,
            events_put=attempts,
            expected=attempts,
            delivered=refused,
            lost=attempts - refused,
            doubled=0,
            dead_expected=0,
            dead_actual=len(self.surfaces.drain_dead_letters()),
            seconds=round(time.monotonic() - started, 2),
            problems=problems,
        )
        result.notes = {"attempts": attempts, **notes}
        return result

    def _exported(self, user: str) -> dict[str, Any]:
        exported = dict(self.surfaces.app.get("/v1/me/export", user=user).body)
        exported.pop("exported_at", None)
        return exported

    def _attacks(self, attacker: str, user: str, notification: str, token: str) -> Iterator[tuple[str, Any]]:
        """Every `/v1/me` route, aimed at `user` by `attacker` (or by someone with no valid token)."""
        app = self.surfaces.app
        forged = self.surfaces.forged_token(user)
        victim_cursor = app.get("/v1/me/notifications", user=user, query={"limit": 1}).body.get("next_cursor")
        routes: list[tuple[str, str, Any]] = [
            ("GET", "/v1/me/notifications", None),
            ("GET", "/v1/me/notifications/count", None),
            ("POST", "/v1/me/notifications/read-all", None),
            ("POST", f"/v1/me/notifications/{notification}/read", None),
            ("POST", f"/v1/me/notifications/{notification}/seen", None),
            ("POST", f"/v1/me/notifications/{notification}/archive", None),
            ("GET", "/v1/me/preferences", None),
            ("PUT", "/v1/me/preferences", {"time_zone": "Asia/Tokyo"}),
            ("PUT", "/v1/me/contacts", {"email": "attacker@example.com"}),
            ("PUT", f"/v1/me/devices/{attacker}-own-device", {"platform": "android"}),
            ("DELETE", f"/v1/me/devices/{token}", None),
            ("GET", "/v1/me/export", None),
            ("DELETE", "/v1/me", None),
        ]
        for method, path, body in routes:
            name = f"{method} {path.replace(user, '<them>')}"
            # their id in the query and in the body; the attacker's own valid token
            yield name, app.request(method, path, user=attacker, query={"user_id": user}, json_body=body)
            if body is not None:
                yield (
                    f"{name} (their id in the body)",
                    app.request(method, path, user=attacker, json_body={**body, "user_id": user}),
                )
            # a token in their name signed by someone else, and no token at all
            yield f"{name} (forged token)", app.request(method, path, user=None, token=forged, json_body=body)
            yield f"{name} (no token)", app.request(method, path, user=None, json_body=body)
        if victim_cursor:
            yield (
                "GET /v1/me/notifications (their cursor)",
                app.get("/v1/me/notifications", user=attacker, query={"limit": 1, "cursor": victim_cursor}),
            )

    def _own_event_id(self, item: Malformed, index: int) -> dict[str, Any]:
        """A distinct event id for each malformed event whose mutation left the id alone."""
        if "event_id" in item.mutation or item.detail.get("event_id") is None:
            return item.detail
        return {**item.detail, "event_id": f"poison-bad-{index}"}

    def _dead_letter_problems(self, result: ScenarioResult, dead: list[dict[str, Any]]) -> None:
        for letter in dead[:5]:
            result.problems.append(
                f"dead-lettered in {letter['queue']}: {letter['event_id']}: {letter['reason']}"
            )

    def _webhook_resends(self) -> dict[str, int]:
        """Resends the webhook receivers absorbed by Idempotency-Key (allowed: DESIGN §8b)."""
        stats = self.surfaces.receiver_stats()
        return {"webhook_resends_deduplicated": sum(s.get("duplicates", 0) for s in stats.values())}

    # -- everything --------------------------------------------------------------------------------
    def run(self, on_result: Callable[[ScenarioResult], None] = lambda r: None) -> list[ScenarioResult]:
        results: list[ScenarioResult] = []

        def record(result: ScenarioResult) -> None:
            results.append(result)
            on_result(result)

        config = self.config
        if "burst" in config.scenarios and config.burst:
            record(self.burst(config.burst))
        if "duplicates" in config.scenarios and config.duplicates:
            record(self.duplicate_storm(config.duplicates, config.copies))
        if "outage" in config.scenarios and config.outage_events:
            for provider in self.outage_providers():
                record(self.outage(provider, config.outage_events, config.outage_seconds))
        if "poison" in config.scenarios and config.poison:
            record(self.poison(config.poison, config.poison_neighbours))
        if "cross_user" in config.scenarios and config.cross_user:
            record(self.cross_user(config.cross_user))
        if "presence_webhooks" in config.scenarios and config.presence_webhooks:
            record(self.presence_webhooks(config.presence_webhooks))
        if "feedback_webhooks" in config.scenarios and config.feedback_webhooks:
            record(self.feedback_webhooks(config.feedback_webhooks))
        if "broadcast" in config.scenarios and config.broadcast:
            record(self.broadcast(config.broadcast))
        return results

    def outage_providers(self) -> list[str]:
        providers = ["fcm", "twilio", "pusher", "webhook"]
        return (["sendgrid"] if self.surfaces.email_provider == "sendgrid" else []) + providers


# ---------------------------------------------------------------------------------------------
# The command
# ---------------------------------------------------------------------------------------------


@contextlib.contextmanager
def soak_stack(parameters: dict[str, str] | None = None, state_file: Any = None) -> Iterator[LocalStack]:
    """The local stack as `make demo` starts it, with the suite's parameters."""
    with LocalStack(
        aws_port=0,
        sandbox_port=0,
        api_port=0,
        parameters={**STACK_PARAMETERS, **(parameters or {})},
        runner_options=RUNNER_OPTIONS,
        state_file=state_file,
    ) as stack:
        yield stack


def report(
    results: Sequence[ScenarioResult], config: Config, started: datetime, seconds: float
) -> dict[str, Any]:
    return {
        "command": "make soak  # " + " ".join(["python -m local.soak", *sys.argv[1:]]),
        "date": started.strftime("%Y-%m-%d %H:%M UTC"),
        "seconds": round(seconds, 1),
        "config": asdict(config),
        "ok": all(r.ok for r in results),
        "scenarios": [r.to_dict() for r in results],
    }


def _play(config: Config, parameters: dict[str, str]) -> int:
    started_at = datetime.now(UTC)
    started = time.monotonic()
    say("Starting Herald's local stack (moto, provider sandboxes, template.yaml, the real handlers)...")
    with soak_stack(parameters) as stack:
        say(f"Stack up in {time.monotonic() - started:.0f}s; playing {', '.join(config.scenarios)}...")
        soak = Soak(stack, config)
        results = soak.run(
            on_result=lambda r: say(
                f"  {r.scenario}: {r.delivered}/{r.expected} delivered, {r.lost} lost, {r.doubled} doubled, "
                f"dead-lettered {r.dead_expected}/{r.dead_actual} in {r.seconds:.0f}s"
                + ("" if r.ok else "  <- " + "; ".join(r.problems[:3]))
            )
        )
    elapsed = time.monotonic() - started
    say(f"\nHerald reliability suite — {started_at:%Y-%m-%d %H:%M} UTC, {elapsed:.0f} s in all\n")
    say(format_table(results))
    for result in results:
        for problem in result.problems:
            say(f"  ! {result.scenario}: {problem}")
    document = report(results, config, started_at, elapsed)
    REPORT_FILE.parent.mkdir(exist_ok=True)
    REPORT_FILE.write_text(json.dumps(document, indent=2, default=str) + "\n", encoding="utf-8")
    verdict = "every scenario held" if document["ok"] else "FAILED"
    say(f"\n{verdict}; figures in {REPORT_FILE.relative_to(REPO)}")
    return 0 if document["ok"] else 1


def main(argv: list[str] | None = None) -> int:
    defaults = Config()
    parser = argparse.ArgumentParser(prog="make soak", description=__doc__.splitlines()[0])
    parser.add_argument("--burst", type=int, default=defaults.burst, help="notifications in the burst")
    parser.add_argument(
        "--duplicates", type=int, default=defaults.duplicates, help="distinct events in the storm"
    )
    parser.add_argument("--copies", type=int, default=defaults.copies, help="puts of each storm event")
    parser.add_argument(
        "--outage-events", type=int, default=defaults.outage_events, help="notifications per provider outage"
    )
    parser.add_argument(
        "--outage-seconds", type=float, default=defaults.outage_seconds, help="how long each provider fails"
    )
    parser.add_argument("--poison", type=int, default=defaults.poison, help="malformed events (hypothesis)")
    parser.add_argument(
        "--neighbours", type=int, default=defaults.poison_neighbours, help="valid events among them"
    )
    parser.add_argument(
        "--cross-user", type=int, default=defaults.cross_user, help="people another person attacks"
    )
    parser.add_argument(
        "--presence-webhooks",
        type=int,
        default=defaults.presence_webhooks,
        help="people whose webhooks are forged",
    )
    parser.add_argument(
        "--feedback-webhooks",
        type=int,
        default=defaults.feedback_webhooks,
        help="people whose SendGrid and Twilio callbacks are forged",
    )
    parser.add_argument(
        "--broadcast", type=int, default=defaults.broadcast, help="members of the role broadcast"
    )
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument(
        "--only", action="append", choices=defaults.scenarios, help="run only these scenarios"
    )
    parser.add_argument(
        "-p", "--parameter", action="append", default=[], metavar="NAME=VALUE", help="template parameter"
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="show the stack's log")
    args = parser.parse_args(argv)
    config = Config(
        burst=args.burst,
        duplicates=args.duplicates,
        copies=args.copies,
        outage_events=args.outage_events,
        outage_seconds=args.outage_seconds,
        poison=args.poison,
        poison_neighbours=args.neighbours,
        cross_user=args.cross_user,
        presence_webhooks=args.presence_webhooks,
        feedback_webhooks=args.feedback_webhooks,
        broadcast=args.broadcast,
        seed=args.seed,
        scenarios=tuple(args.only or defaults.scenarios),
    )
    parameters = dict(item.split("=", 1) for item in args.parameter)
    # A batch of duplicates only has nothing to count: powertools warns on stderr, over the table.
    warnings.filterwarnings("ignore", message="No application metrics to publish")
    if args.verbose:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
        return _play(config, parameters)
    STATE_DIR.mkdir(exist_ok=True)
    with LOG_FILE.open("w", encoding="utf-8") as log, contextlib.redirect_stdout(log):
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", stream=log)
        code = _play(config, parameters)
    say(f"(the stack's own logs: {LOG_FILE.relative_to(REPO)})")
    return code


if __name__ == "__main__":
    sys.exit(main())
