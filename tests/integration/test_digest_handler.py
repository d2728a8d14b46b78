"""The digest function on moto (template.yaml provisioned): due unread medium notifications become
one email per person at their local daytime, through the Email queue and the real email sender
(SES on moto); read / archived / read-all / acknowledged ones never; two overlapping runs and runs
that crash halfway still make exactly one digest per person, each notification in it once."""

from __future__ import annotations

import hashlib
import json
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from moto.ses.models import ses_backends

from herald.catalog import load_catalog
from herald.digest import DIGEST_TYPE, DigestRunError, DigestService, DigestSettings
from herald.messages import ChannelMessage, parse_channel_body
from herald.models import Urgency
from herald.rendering import TemplateRenderer
from herald.settings import load
from herald.stores.dynamo import from_attributes, to_attributes
from herald.stores.keys import email_address, user_pk
from herald.stores.notifications import NotificationRecord, NotificationStore, stamp
from herald.stores.suppression import SuppressionStore
from herald.stores.users import UserStore
from herald.users import UserProfile
from tests.support.aws import REPO_ROOT
from tests.support.lambda_context import FakeContext
from tests.support.sqs import sqs_event
from tests.support.stack import ACCOUNT, REGION, MotoStack, SharedStack, fresh_function_module

pytestmark = pytest.mark.integration
CONTEXT = FakeContext("herald-digest", 300)

CATALOG = load_catalog()
# A fixed instant for the service's clock: 12:00 UTC, so a person in UTC is mid-window.
NOON = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def zone_where_it_is(hour: int, at: datetime) -> str:
    """An IANA zone (fixed offset) whose local hour is `hour` at `at`."""
    offset = (hour - at.astimezone(UTC).hour) % 24
    offset = offset - 24 if offset > 12 else offset
    return "Etc/GMT" if offset == 0 else f"Etc/GMT{-offset:+d}"  # Etc/GMT-3 is UTC+3


class Serialized:
    """A client whose calls run one at a time: DynamoDB applies each request atomically, and moto
    in-process does not serialize concurrent ones (threads still interleave between requests, where
    real races happen)."""

    def __init__(self, client: Any, lock: threading.Lock) -> None:
        self._client = client
        self._lock = lock

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._client, name)
        if not callable(attribute):
            return attribute

        def call(*args: Any, **kwargs: Any) -> Any:
            with self._lock:
                return attribute(*args, **kwargs)

        return call


class Failing:
    """A client that raises once on the first call matching `when` (before it reaches AWS): a
    crash of the run at that point."""

    def __init__(self, client: Any, when: Callable[[str, dict[str, Any]], bool]) -> None:
        self._client = client
        self._when = when
        self.failed = False

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._client, name)
        if not callable(attribute):
            return attribute

        def call(**kwargs: Any) -> Any:
            if not self.failed and self._when(name, kwargs):
                self.failed = True
                raise RuntimeError(f"the run crashed before {name}")
            return attribute(**kwargs)

        return call


class Paused:
    """A client that stops before the first call matching `when` until `release` is set."""

    def __init__(self, client: Any, when: Callable[[str, dict[str, Any]], bool]) -> None:
        self._client = client
        self._when = when
        self.reached = threading.Event()
        self.release = threading.Event()

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._client, name)
        if not callable(attribute):
            return attribute

        def call(**kwargs: Any) -> Any:
            if not self.reached.is_set() and self._when(name, kwargs):
                self.reached.set()
                assert self.release.wait(30), "never released"
            return attribute(**kwargs)

        return call


def updating(fragment: str) -> Callable[[str, dict[str, Any]], bool]:
    return lambda name, kwargs: name == "update_item" and fragment in kwargs.get("UpdateExpression", "")


class World:
    """The provisioned stack with the data the digest reads, and ways to run it and the email sender."""

    def __init__(self, stack: MotoStack) -> None:
        self.stack = stack
        self.dynamodb = stack.client("dynamodb")
        self.sqs = stack.client("sqs")
        self.notifications = stack.tables["NotificationsTable"]
        self.users = stack.tables["UsersTable"]

    # -- data ---------------------------------------------------------------------------------

    def person(self, user_id: str, **fields: Any) -> UserProfile:
        profile = UserProfile.model_validate(
            {"user_id": user_id, "email": f"user{user_id}@example.com", "time_zone": "UTC", **fields}
        )
        UserStore(self.dynamodb, self.users).put_profile(profile)
        return profile

    def notify(
        self, user_id: str, number: int, *, due: datetime, type_name: str = "order_shipped", **fields: Any
    ) -> str:
        """A medium notification as the router writes it: in the inbox, unread, awaiting its digest."""
        entry = CATALOG.entry(type_name)
        created = fields.pop("created_at", due - timedelta(days=1))
        notification_id = "ntf-" + hashlib.sha256(f"{user_id}#{number}".encode()).hexdigest()[:32]
        NotificationStore(self.dynamodb, self.notifications).create(
            NotificationRecord(
                user_id=user_id,
                notification_id=notification_id,
                event_id=f"evt-{user_id}-{number}",
                type=type_name,
                category=entry.category,
                urgency=Urgency.MEDIUM,
                locale="en",
                data={**entry.sample_data, **fields.pop("data", {})},
                created_at=created,
                status="dispatched",
                inbox=True,
                unread_at=stamp(created),
                expires_at=int((due + timedelta(days=90)).timestamp()),
                **NotificationRecord.digest_fields(due),
                **fields,
            )
        )
        return notification_id

    def set(self, user_id: str, notification_id: str, expression: str, **values: Any) -> None:
        self.dynamodb.update_item(
            TableName=self.notifications,
            Key=to_attributes({"user_id": user_id, "notification_id": notification_id}),
            UpdateExpression=expression,
            ExpressionAttributeValues=to_attributes(values),
        )

    def read_all(self, user_id: str, at: datetime) -> None:
        """The inbox's read-all watermark (herald.inbox: the person's `INBOX` item)."""
        self.dynamodb.put_item(
            TableName=self.users,
            Item=to_attributes({"pk": user_pk(user_id), "sk": "INBOX", "read_all_at": stamp(at)}),
        )

    def record(self, user_id: str, notification_id: str) -> dict[str, Any]:
        item = self.dynamodb.get_item(
            TableName=self.notifications,
            Key=to_attributes({"user_id": user_id, "notification_id": notification_id}),
            ConsistentRead=True,
        )["Item"]
        return from_attributes(item)

    def digests(self, user_id: str) -> list[dict[str, Any]]:
        response = self.dynamodb.query(
            TableName=self.notifications,
            KeyConditionExpression="user_id = :u AND begins_with(notification_id, :p)",
            ExpressionAttributeValues=to_attributes({":u": user_id, ":p": "dgs-"}),
            ConsistentRead=True,
        )
        return [from_attributes(item) for item in response["Items"]]

    # -- the runs -----------------------------------------------------------------------------

    def service(
        self, at: datetime, *, dynamodb: Any = None, sqs: Any = None, **settings: Any
    ) -> DigestService:
        return DigestService(
            dynamodb=dynamodb or self.dynamodb,
            sqs=sqs or self.sqs,
            settings=load(DigestSettings).model_copy(update=settings),
            catalog=CATALOG,
            renderer=TemplateRenderer(),
            clock=lambda: at,
        )

    def email_messages(self) -> list[ChannelMessage]:
        return [parse_channel_body(m["Body"]) for m in self.stack.drain("Email")]

    def send(self, messages: list[ChannelMessage]) -> list[Any]:
        """The real email sender on the queued messages; returns what SES (moto) sent."""
        app = fresh_function_module("functions.email_sender.app")
        response = app.lambda_handler(sqs_event(*(m.queue_body() for m in messages)), CONTEXT)
        assert response == {"batchItemFailures": []}
        return list(ses_backends[ACCOUNT][REGION].sent_messages)


@pytest.fixture
def world(_provisioned: SharedStack, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    """template.yaml on moto, provisioned once for the module and fresh for each test."""
    with _provisioned.checkout(monkeypatch) as stack:
        yield World(stack)


def total(emf: dict[str, Any], name: str) -> float:
    """A metric's value in one EMF document (powertools writes a list when it has several)."""
    value = emf.get(name, 0)
    return sum(value) if isinstance(value, list) else value


def scheduled_event(at: datetime) -> dict[str, Any]:
    """What EventBridge sends on each tick of the schedule."""
    return {
        "version": "0",
        "id": "tick-1",
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": ACCOUNT,
        "time": at.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": REGION,
        "resources": [f"arn:aws:events:{REGION}:{ACCOUNT}:rule/herald-test-DigestRun"],
        "detail": {},
    }


def digest_of(world: World, message: ChannelMessage) -> dict[str, Any]:
    return world.record(message.user_id, message.notification_id)


# -- the handler, end to end ------------------------------------------------------------------------


def test_due_unread_notifications_become_one_email_listing_them(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN a person at midday local time with two notifications unread a day on (one due yesterday)
    now = datetime.now(UTC)
    world.person("42", time_zone=zone_where_it_is(12, now), locale="es")
    shipped = world.notify("42", 1, due=now - timedelta(days=1))
    reply = world.notify("42", 2, due=now - timedelta(minutes=1), type_name="comment_reply")

    # WHEN the scheduled function runs (the template wires it to its schedule; the local runner fires it)
    [schedule] = world.stack.functions["DigestFunction"].schedules
    assert schedule.expression == "rate(15 minutes)"
    app = fresh_function_module("functions.digest.app")
    report = app.lambda_handler(scheduled_event(now), CONTEXT)

    # THEN one reference email message is queued for one digest record listing both
    assert report["digests_queued"] == 1 and report["notifications_digested"] == 2
    [message] = world.email_messages()
    assert message.is_reference and (message.type, message.channel) == (DIGEST_TYPE, "email")
    digest = digest_of(world, message)
    assert (digest["status"], digest["inbox"], digest["locale"]) == ("queued", False, "es")
    assert "digest_day" not in digest and "digest_due_at" not in digest  # out of the index
    titles = [item["title"] for item in digest["data"]["items"]]
    assert titles == ["Ana respondió a tu comentario", "Pedido n.º 999 enviado"]  # newest first, in Spanish
    assert digest["data"]["items"][0]["url"] == f"https://app.example.com/notifications/{reply}"
    for notification_id in (shipped, reply):
        item = world.record("42", notification_id)
        assert item["digested_in"] == message.notification_id
        assert "digest_day" not in item
    # AND its metrics
    emf = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    counted = [
        (total(m, "DigestsSent"), total(m, "NotificationsDigested")) for m in emf if "DigestsSent" in m
    ]
    assert counted == [(1, 2)], emf

    # AND the email sender sends it: one email to the person, in Spanish, with the links
    [mail] = world.send([message])
    assert "user42@example.com" in str(mail.destinations)
    assert mail.subject == "Tienes 2 notificaciones sin leer"
    assert f"https://app.example.com/notifications/{shipped}" in mail.body
    assert world.record("42", message.notification_id)["deliveries"]["email"]["state"] == "sent"


def test_the_sample_event_runs_the_function(world: World) -> None:
    event = json.loads((REPO_ROOT / "events" / "digest.json").read_text())
    app = fresh_function_module("functions.digest.app")

    assert app.lambda_handler(event, CONTEXT)["digests_queued"] == 0
    assert world.email_messages() == []


# -- what never goes in a digest --------------------------------------------------------------------


def test_read_archived_read_all_and_acknowledged_notifications_get_no_digest(world: World) -> None:
    world.person("42")
    due = NOON - timedelta(minutes=5)
    read, archived, acked, covered = (world.notify("42", n, due=due) for n in range(1, 5))
    world.set("42", read, "SET read_at = :at, seen_at = :at REMOVE unread_at", **{":at": stamp(NOON)})
    world.set("42", archived, "SET archived_at = :at REMOVE unread_at", **{":at": stamp(NOON)})
    world.set("42", acked, "SET acked_at = :at", **{":at": stamp(NOON)})
    world.read_all("42", due - timedelta(hours=1))  # after `covered` was created (a day before due)
    world.set("42", read, "SET created_at = :at", **{":at": stamp(due)})  # not covered: read itself

    report = world.service(NOON).run()

    assert world.email_messages() == [] and world.digests("42") == []
    assert report.skipped == {"read": 1, "archived": 1, "acknowledged": 1, "read_all": 1}
    reasons = {n: world.record("42", n) for n in (read, archived, acked, covered)}
    assert {n: (r.get("digest_skipped"), "digest_day" in r) for n, r in reasons.items()} == {
        read: ("read", False),
        archived: ("archived", False),
        acked: ("acknowledged", False),
        covered: ("read_all", False),
    }


def test_a_notification_read_between_the_index_read_and_the_claim_is_left_out(world: World) -> None:
    world.person("42")
    kept, read_meanwhile = world.notify("42", 1, due=NOON), world.notify("42", 2, due=NOON)
    dynamodb = Paused(world.dynamodb, lambda name, _: name == "transact_write_items")
    run = threading.Thread(target=world.service(NOON, dynamodb=dynamodb).run)
    run.start()
    assert dynamodb.reached.wait(30)

    world.set("42", read_meanwhile, "SET read_at = :at REMOVE unread_at", **{":at": stamp(NOON)})
    dynamodb.release.set()
    run.join(30)

    [message] = world.email_messages()
    assert [e["notification_id"] for e in digest_of(world, message)["digest_entries"]] == [kept]
    assert "digested_in" not in world.record("42", read_meanwhile)


def test_nothing_before_it_is_due_then_one_digest_once_it_is(world: World) -> None:
    world.person("42")
    notification_id = world.notify("42", 1, due=NOON + timedelta(minutes=10))

    assert world.service(NOON).run().candidates == 0
    assert world.email_messages() == []

    world.service(NOON + timedelta(minutes=15)).run()
    [message] = world.email_messages()
    assert world.record("42", notification_id)["digested_in"] == message.notification_id


def test_email_turned_off_means_no_digest_and_the_items_leave_the_index(world: World) -> None:
    world.person("42", preferences={"channels": {"email": False}})
    notification_id = world.notify("42", 1, due=NOON)

    world.service(NOON).run()

    assert world.email_messages() == [] and world.digests("42") == []
    assert world.record("42", notification_id)["digest_skipped"] == "email_opted_out"


def test_a_suppressed_address_gets_no_email_the_sender_records_why(world: World) -> None:
    world.person("42")
    world.notify("42", 1, due=NOON)
    SuppressionStore(world.dynamodb, world.stack.tables["SuppressionTable"]).suppress(
        email_address("user42@example.com"), reason="bounce", source="ses"
    )

    world.service(NOON).run()
    [message] = world.email_messages()

    assert world.send([message]) == []
    assert digest_of(world, message)["deliveries"]["email"]["state"] == "suppressed"


def test_nothing_is_written_for_a_person_erased_while_the_run_reads(world: World) -> None:
    world.person("42")
    world.notify("42", 1, due=NOON)
    # the erasure's tombstone stands (it is written before the rest of the person goes)
    world.dynamodb.put_item(
        TableName=world.users,
        Item=to_attributes({"pk": user_pk("42"), "sk": "DIRECTORY", "version": 3, "deleted_at": stamp(NOON)}),
    )

    world.service(NOON).run()

    assert world.digests("42") == [] and world.email_messages() == []


# -- the person's local daytime ---------------------------------------------------------------------


def test_outside_the_local_window_the_items_wait_and_go_in_the_morning(world: World) -> None:
    world.person("42", time_zone="America/New_York")  # NOON UTC is 07:00 there
    notification_id = world.notify("42", 1, due=NOON - timedelta(hours=3))

    early = world.service(NOON).run()

    assert world.email_messages() == [] and "42" in early.waiting
    assert "digest_day" in world.record("42", notification_id)  # still waiting in the index

    world.service(NOON + timedelta(hours=2)).run()  # 09:00 in New York
    [message] = world.email_messages()
    assert world.record("42", notification_id)["digested_in"] == message.notification_id


def test_quiet_hours_hold_the_digest_back_within_the_window(world: World) -> None:
    world.person("42", quiet_hours={"start": "22:00", "end": "13:00"})
    world.notify("42", 1, due=NOON - timedelta(hours=1))

    world.service(NOON).run()
    assert world.email_messages() == []

    world.service(NOON + timedelta(hours=1)).run()
    assert len(world.email_messages()) == 1


def test_a_second_batch_the_same_day_waits_for_the_minimum_interval(world: World) -> None:
    world.person("42")
    first = world.notify("42", 1, due=NOON - timedelta(hours=1))
    world.service(NOON).run()
    [morning] = world.email_messages()

    later = world.notify("42", 2, due=NOON + timedelta(hours=1))
    world.service(NOON + timedelta(hours=2)).run()  # 14:00: 2 h after the first digest
    assert world.email_messages() == []
    assert "digest_day" in world.record("42", later)

    world.service(NOON + timedelta(hours=2), min_interval_seconds=3600).run()
    [afternoon] = world.email_messages()
    assert afternoon.notification_id != morning.notification_id
    assert world.record("42", first)["digested_in"] == morning.notification_id
    assert world.record("42", later)["digested_in"] == afternoon.notification_id


# -- overlapping runs and crashes -------------------------------------------------------------------


def test_two_concurrent_runs_make_one_digest_per_person_each_notification_once(world: World) -> None:
    people = [str(n) for n in range(1, 6)]
    for user_id in people:
        world.person(user_id)
        for number in range(1, 7):
            world.notify(user_id, number, due=NOON - timedelta(minutes=number))
    lock = threading.Lock()
    services = [
        world.service(
            NOON,
            dynamodb=Serialized(world.stack.client("dynamodb"), lock),
            sqs=Serialized(world.stack.client("sqs"), lock),
        )
        for _ in range(2)
    ]
    start = threading.Barrier(len(services))
    reports: list[Any] = []

    def run(service: DigestService) -> None:
        start.wait()
        reports.append(service.run())

    threads = [threading.Thread(target=run, args=(s,)) for s in services]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)

    assert len(reports) == 2
    assert sum(r.notifications_digested for r in reports) == 30
    assert sum(len(r.digests_queued) for r in reports) == 5
    messages = world.email_messages()
    by_person = {m.user_id: {x.notification_id for x in messages if x.user_id == m.user_id} for m in messages}
    assert {u: len(ids) for u, ids in by_person.items()} == dict.fromkeys(people, 1)
    for user_id in people:
        [digest] = world.digests(user_id)
        listed = Counter(e["notification_id"] for e in digest["digest_entries"])
        assert len(listed) == 6 and set(listed.values()) == {1}
        assert digest["data"]["count"] == 6
    assert len(world.send(messages)) == 5  # duplicates, if any were queued, are no-ops


def test_a_run_that_joins_an_open_digest_finishes_it_and_the_first_run_adds_nothing(world: World) -> None:
    world.person("42")
    ids = {world.notify("42", n, due=NOON) for n in range(1, 4)}
    # the first run stops right after creating the digest, before claiming anything
    dynamodb = Paused(world.dynamodb, lambda name, _: name == "transact_write_items")
    first = threading.Thread(target=world.service(NOON, dynamodb=dynamodb).run)
    first.start()
    assert dynamodb.reached.wait(30)

    second = world.service(NOON).run()  # finds the open digest: claims everything into it, sends it
    dynamodb.release.set()
    first.join(30)

    assert len(second.digests_queued) == 1 and second.notifications_digested == 3
    [message] = world.email_messages()
    [digest] = world.digests("42")
    assert {e["notification_id"] for e in digest["digest_entries"]} == ids
    assert digest["notification_id"] == message.notification_id


@pytest.mark.parametrize(
    "crash",
    [
        pytest.param(("dynamodb", updating("sealed_at = :now, #status = :sealed")), id="after-claiming"),
        pytest.param(("sqs", lambda name, _: name == "send_message_batch"), id="after-sealing"),
        pytest.param(("dynamodb", updating("queued_at")), id="after-queueing"),
    ],
)
def test_a_run_that_crashes_halfway_is_finished_by_the_next_one_exactly_once(
    world: World, crash: tuple[str, Callable[[str, dict[str, Any]], bool]]
) -> None:
    world.person("42")
    ids = {world.notify("42", n, due=NOON) for n in range(1, 4)}
    client, when = crash
    failing = Failing(world.dynamodb if client == "dynamodb" else world.sqs, when)

    with pytest.raises(DigestRunError):
        world.service(NOON, **{client: failing}).run()
    assert failing.failed
    world.service(NOON + timedelta(minutes=15)).run()

    messages = world.email_messages()
    assert {m.notification_id for m in messages} == {world.digests("42")[0]["notification_id"]}
    [digest] = world.digests("42")
    assert {e["notification_id"] for e in digest["digest_entries"]} == ids
    assert all(world.record("42", n)["digested_in"] == digest["notification_id"] for n in ids)
    assert len(world.send(messages)) == 1  # a message queued twice is still one email
