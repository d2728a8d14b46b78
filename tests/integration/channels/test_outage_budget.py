"""The outage budget through the real ChannelSender on the template's queues and tables (moto):
retry-later answers are budgeted in time, waits spend nothing, SQS never dead-letters a message in
its budget (renewals), a message past it is dead-lettered once with the reason, a redriven copy
starts afresh, and a record that keeps crashing still reaches the DLQ (decision 010).

Time is a fake clock for the sender and the ledger; SQS's visibility is real, so a test "waits"
by making the message visible again and moving the clock by what the sender asked for."""

from __future__ import annotations

import json
import random
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from botocore.exceptions import ClientError

from herald.catalog import load_catalog
from herald.channels.context import DeliveryContext
from herald.channels.outage import RESERVED_RECEIVES, Backoff, OutageBudget
from herald.channels.result import Accepted, RetryLater, SendResult
from herald.channels.sender import ChannelRecord, ChannelSender, RetryLaterError
from herald.channels.settings import EmailSenderSettings
from herald.delivery import DeliveryLedger
from herald.messages import ChannelMessage
from herald.models import Channel
from herald.settings import load
from herald.stores.dynamo import to_attributes
from herald.stores.suppression import SuppressionStore
from herald.stores.users import UserStore
from herald_cli.redrive import move_messages, queue_pair
from local.runner import sqs_record
from tests.integration.channels.conftest import REGION, Env, a_message

pytestmark = pytest.mark.integration

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)

    def elapsed(self) -> float:
        return (self.now - T0).total_seconds()


class Shortest(random.Random):
    """Every jitter draw at 0: one-second steps, the most receives an outage can take."""

    def uniform(self, a: float, b: float) -> float:
        return a


@dataclass
class Provider:
    """A channel deliverer whose provider is down (503) until told otherwise."""

    channel: Channel = Channel.EMAIL
    resend_stale_claims: bool = False
    failing: bool = True
    calls: int = 0
    sent: list[str] = field(default_factory=list)

    def deliver(self, context: DeliveryContext) -> SendResult:
        self.calls += 1
        if self.failing:
            return RetryLater("sendgrid", "503 Service Unavailable", code="503")
        self.sent.append(context.message.notification_id)
        return Accepted("sendgrid", f"sg-{len(self.sent)}")


@dataclass
class Metrics:
    names: list[str] = field(default_factory=list)

    def add_metric(self, name: str, unit: Any, value: float, *args: Any, **kwargs: Any) -> None:
        self.names.append(name)

    def count(self, prefix: str) -> int:
        return sum(1 for name in self.names if name.startswith(prefix))


class Context:
    def __init__(self, remaining_ms: int = 30_000) -> None:
        self.remaining_ms = remaining_ms

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_ms


NEAR_DEADLINE = Context(1_000)


class CrashingLedger(DeliveryLedger):
    """DynamoDB failing for this table: every claim raises (a crash, not a provider answer)."""

    def claim(self, *args: Any, **kwargs: Any) -> Any:
        raise ClientError({"Error": {"Code": "InternalServerError", "Message": "boom"}}, "UpdateItem")


class StepFunctions:
    """The escalation's side of a task token: what the sender told it."""

    def __init__(self) -> None:
        self.failures: list[dict[str, Any]] = []

    def send_task_failure(self, **kwargs: Any) -> dict[str, Any]:
        self.failures.append(kwargs)
        return {}


class RecordingSqs:
    """The real client, with the messages the sender sends kept for inspection."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self.sent: list[dict[str, Any]] = []

    def send_message(self, **kwargs: Any) -> Any:
        self.sent.append(kwargs)
        return self._client.send_message(**kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


@dataclass
class Harness:
    env: Env
    sender: ChannelSender
    provider: Provider
    clock: Clock
    metrics: Metrics
    sqs: Any
    ledger: DeliveryLedger
    queue_url: str
    dlq_url: str
    max_receive_count: int
    last_receive_count: int = 0

    def enqueue(self, message: ChannelMessage, body: str | None = None) -> None:
        self.env.create_record(message)
        self.sqs.send_message(QueueUrl=self.queue_url, MessageBody=body or message.queue_body())

    def receive(self, timeout: float = 5.0) -> dict[str, Any] | None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.sqs.receive_message(
                QueueUrl=self.queue_url,
                MaxNumberOfMessages=1,
                AttributeNames=["All"],
                MessageAttributeNames=["All"],
                WaitTimeSeconds=1,
            ).get("Messages", [])
            if found:
                return found[0]
        return None

    def step(
        self, context: Context | None = None, *, advance: bool = True
    ) -> dict[str, Any] | RetryLaterError:
        """One receive handled as Lambda would: a success deletes the message, a RetryLaterError
        leaves it to SQS; the wait then passes at once (visibility 0), on the clock if `advance`
        (a renewed copy's wait too: it is real, but short with these settings)."""
        message = self.receive()
        assert message is not None, "no message to receive: SQS dead-lettered it, or it was lost"
        record = ChannelRecord.model_validate(sqs_record(message, queue_arn="arn:queue", region=REGION))
        self.last_receive_count = int(record.attributes.ApproximateReceiveCount)
        assert self.last_receive_count <= self.max_receive_count
        try:
            result = self.sender.handle_record(record, context or Context())
        except RetryLaterError as error:
            if advance:
                self.clock.advance(error.delay_seconds)
            self.sqs.change_message_visibility(
                QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0
            )
            return error
        self.sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"])
        if advance and result["state"] == "renewed":  # the copy comes back after the wait
            self.clock.advance(result["retry_in"])
        return result

    def dead_letters(self) -> list[dict[str, Any]]:
        return self.sqs.receive_message(
            QueueUrl=self.dlq_url, MaxNumberOfMessages=10, MessageAttributeNames=["All"], VisibilityTimeout=0
        ).get("Messages", [])

    def delivery(self, message: ChannelMessage) -> dict[str, Any]:
        return self.env.record(message)["deliveries"]["email"]

    def set_delivery(self, message: ChannelMessage, delivery: dict[str, Any]) -> None:
        self.env.client("dynamodb").update_item(
            TableName=self.env.stack.tables["NotificationsTable"],
            Key=to_attributes({"user_id": message.user_id, "notification_id": message.notification_id}),
            UpdateExpression="SET deliveries.#ch = :d",
            ExpressionAttributeNames={"#ch": "email"},
            ExpressionAttributeValues=to_attributes({":d": delivery}),
        )


def make_harness(
    env: Env,
    *,
    tolerance: float,
    rng: random.Random | None = None,
    ledger_type: type[DeliveryLedger] = DeliveryLedger,
    sqs: Any = None,
    sfn: Any = None,
) -> Harness:
    settings = load(EmailSenderSettings)
    clock, provider, metrics = Clock(), Provider(), Metrics()
    dynamodb = env.client("dynamodb")
    sqs = sqs or env.client("sqs")
    ledger = ledger_type(dynamodb, settings.notifications_table, clock=clock)
    sender = ChannelSender(
        provider,
        ledger=ledger,
        users=UserStore(dynamodb, settings.users_table),
        suppression=SuppressionStore(dynamodb, settings.suppression_table),
        catalog=load_catalog(),
        sqs=sqs,
        queue_url=settings.queue_url,
        metrics=metrics,
        sfn=sfn,
        outage=OutageBudget(tolerance, Backoff(1, rng=rng or random.Random(7))),
        max_receive_count=settings.max_receive_count,
        dead_letter_queue_url=settings.dead_letter_queue_url,
        clock=clock,
    )
    return Harness(
        env, sender, provider, clock, metrics, sqs, ledger, settings.queue_url,
        settings.dead_letter_queue_url, settings.max_receive_count,
    )  # fmt: skip


def run_until_dead_lettered(harness: Harness, tolerance: float) -> list[float]:
    """Steps through an endless outage; returns the clock at each retry. Asserts none is past it."""
    retried_at: list[float] = []
    for _ in range(200):
        elapsed = harness.clock.elapsed()
        result = harness.step()
        if isinstance(result, dict) and result["state"] == "dead_lettered":
            assert elapsed >= tolerance, f"dead-lettered {elapsed} s into a {tolerance} s tolerance"
            return retried_at
        assert elapsed < tolerance, f"still retrying {elapsed} s into a {tolerance} s tolerance"
        retried_at.append(elapsed)
    raise AssertionError("never dead-lettered")


def test_the_senders_receive_count_is_the_queues(env: Env) -> None:
    harness = make_harness(env, tolerance=60)
    policy = env.client("sqs").get_queue_attributes(
        QueueUrl=harness.queue_url, AttributeNames=["RedrivePolicy"]
    )
    assert json.loads(policy["Attributes"]["RedrivePolicy"])["maxReceiveCount"] == harness.max_receive_count


def test_retries_within_the_tolerance_never_reach_the_dlq_however_many_receives_they_take(env: Env) -> None:
    harness = make_harness(env, tolerance=3600, rng=Shortest())
    message = a_message(Channel.EMAIL, to="ana@example.com")
    harness.enqueue(message)
    steps = 2 * harness.max_receive_count + 5
    results = [harness.step() for _ in range(steps)]

    renewed = [r for r in results if isinstance(r, dict)]
    assert renewed and all(r["state"] == "renewed" for r in renewed)
    assert harness.metrics.count("MessagesRenewed") == len(renewed) >= 2
    assert harness.provider.calls == steps  # every receive was a provider attempt
    assert harness.dead_letters() == []
    delivery = harness.delivery(message)
    assert (delivery["failing_since"], delivery["failures"]) == (T0.isoformat(), steps)

    harness.provider.failing = False
    assert harness.step()["state"] == "sent"
    assert harness.provider.sent == ["ntf-1"]
    assert harness.receive(timeout=2) is None  # no copy left behind
    assert harness.dead_letters() == []


def test_past_the_tolerance_the_message_is_dead_lettered_once_with_the_reason(env: Env) -> None:
    harness = make_harness(env, tolerance=30, rng=Shortest())
    message = a_message(Channel.EMAIL, to="ana@example.com")
    body = json.dumps({**json.loads(message.queue_body()), "field_of_a_newer_release": 1})
    harness.enqueue(message, body)

    retried_at = run_until_dead_lettered(harness, 30)

    assert len(retried_at) == 30 and harness.provider.calls == 31
    [dead] = harness.dead_letters()
    assert dead["Body"] == body  # as received: nothing this release does not know is lost
    attributes = {name: value["StringValue"] for name, value in dead["MessageAttributes"].items()}
    assert "past the outage tolerance of 30 s" in attributes["herald_dead_letter_reason"]
    assert "503 Service Unavailable" in attributes["herald_dead_letter_reason"]
    assert attributes["herald_failing_since"] == T0.isoformat()
    assert attributes["herald_failures"] == "31"
    assert (attributes["herald_event_id"], attributes["herald_notification_id"]) == ("evt-1", "ntf-1")
    assert harness.metrics.count("OutageToleranceExceeded") == 1
    assert harness.receive(timeout=1.5) is None  # gone from the queue
    record = harness.env.record(message)
    delivery = record["deliveries"]["email"]
    assert delivery["state"] == "retry" and "failing_since" not in delivery and "failures" not in delivery
    assert delivery["dead_lettered_at"] == harness.clock.now.isoformat()
    assert record["delivery_log"][-1]["outcome"] == "dead_lettered"


def test_a_redriven_message_starts_a_fresh_budget_and_is_delivered_once(env: Env) -> None:
    harness = make_harness(env, tolerance=30, rng=Shortest())
    message = a_message(Channel.EMAIL, to="ana@example.com")
    harness.enqueue(message)
    run_until_dead_lettered(harness, 30)
    harness.clock.advance(600)  # the operator looks, the provider is still down

    report = move_messages(harness.sqs, queue_pair(harness.sqs, harness.queue_url))
    assert (report.moved, report.failed) == (1, 0)
    assert harness.dead_letters() == []

    redriven_at = harness.clock.now  # long past the first run's failing_since + tolerance
    retry = harness.step()
    assert isinstance(retry, RetryLaterError), "a redriven message must not be dead-lettered at once"
    delivery = harness.delivery(message)
    assert (delivery["failing_since"], delivery["failures"]) == (redriven_at.isoformat(), 1)
    harness.provider.failing = False
    assert harness.step()["state"] == "sent"
    assert harness.provider.sent == ["ntf-1"]
    assert harness.receive(timeout=1.5) is None


def test_waiting_for_another_invocations_claim_spends_nothing(env: Env) -> None:
    harness = make_harness(env, tolerance=60, rng=Shortest())
    message = a_message(Channel.EMAIL, to="ana@example.com")
    harness.enqueue(message)
    holder = {"state": "sending", "claim_id": "other", "claim_expires_at": int(T0.timestamp()) + 2}
    harness.set_delivery(message, holder)

    waits = [harness.step(advance=False) for _ in range(harness.max_receive_count + 3)]

    assert all(isinstance(w, RetryLaterError) or w["state"] == "renewed" for w in waits)
    assert any(isinstance(w, dict) for w in waits)  # renewed before SQS would dead-letter it
    assert harness.provider.calls == 0 and harness.dead_letters() == []
    # the holder records its own first failure; ours is the run's second, on the same clock
    harness.set_delivery(message, {"state": "retry", "failing_since": T0.isoformat(), "failures": 1})
    retry = harness.step()
    assert isinstance(retry, RetryLaterError)
    assert (harness.delivery(message)["failures"], harness.delivery(message)["failing_since"]) == (
        2,
        T0.isoformat(),
    )


def test_not_before_waits_and_deadline_hand_backs_spend_nothing(env: Env) -> None:
    harness = make_harness(env, tolerance=60, rng=random.Random(3))
    message = a_message(Channel.EMAIL, to="ana@example.com", not_before=T0 + timedelta(seconds=1))
    harness.enqueue(message)

    for i in range(harness.max_receive_count + 3):  # each one a receive, none a provider attempt
        harness.step(NEAR_DEADLINE if i % 2 else None, advance=False)

    assert harness.provider.calls == 0 and harness.dead_letters() == []
    assert "deliveries" not in harness.env.record(message) or "email" not in harness.env.record(message).get(
        "deliveries", {}
    )
    harness.clock.advance(1)  # not_before reached
    retry = harness.step()
    assert isinstance(retry, RetryLaterError)
    assert retry.delay_seconds <= 1 + 1  # the first failure's step: base * 2^0, not inflated by the waits
    delivery = harness.delivery(message)
    assert (delivery["failing_since"], delivery["failures"]) == ((T0 + timedelta(seconds=1)).isoformat(), 1)


def test_a_wait_longer_than_a_visibility_change_allows_renews_with_a_retry_time(env: Env) -> None:
    sqs = RecordingSqs(env.client("sqs"))
    harness = make_harness(env, tolerance=60, sqs=sqs)
    twenty_hours = 20 * 3600
    message = a_message(Channel.EMAIL, to="ana@example.com", not_before=T0 + timedelta(seconds=twenty_hours))
    harness.enqueue(message)

    assert harness.step(advance=False)["state"] == "renewed"

    [copy] = [sent for sent in sqs.sent if sent["QueueUrl"] == harness.queue_url][-1:]
    assert copy["DelaySeconds"] == 900
    retry_at = copy["MessageAttributes"]["herald_retry_at"]
    assert int(retry_at["StringValue"]) == int(T0.timestamp()) + twenty_hours
    # the copy (sent here without its delay) waits for its time without a provider attempt
    env.client("sqs").send_message(
        QueueUrl=harness.queue_url,
        MessageBody=copy["MessageBody"],
        MessageAttributes=copy["MessageAttributes"],
    )
    harness.clock.advance(twenty_hours - 100)
    wait = harness.step()
    assert isinstance(wait, RetryLaterError) and wait.delay_seconds == 100
    assert harness.provider.calls == 0
    harness.provider.failing = False
    assert harness.step()["state"] == "sent"


def test_a_record_that_keeps_crashing_still_reaches_the_dlq_after_max_receive_count(env: Env) -> None:
    harness = make_harness(env, tolerance=3600, ledger_type=CrashingLedger)
    message = a_message(Channel.EMAIL, to="ana@example.com")
    harness.enqueue(message)

    for receive in range(1, harness.max_receive_count + 1):
        sqs_message = harness.receive()
        assert sqs_message is not None
        assert sqs_message["Attributes"]["ApproximateReceiveCount"] == str(receive)
        record = ChannelRecord.model_validate(sqs_record(sqs_message, queue_arn="arn:queue", region=REGION))
        with pytest.raises(ClientError):
            harness.sender.handle_record(record, Context())
        harness.sqs.change_message_visibility(  # the queue's visibility timeout passes
            QueueUrl=harness.queue_url, ReceiptHandle=sqs_message["ReceiptHandle"], VisibilityTimeout=0
        )

    assert harness.receive(timeout=1.5) is None  # SQS moved it on the receive after the last
    assert [json.loads(m["Body"])["notification_id"] for m in harness.dead_letters()] == ["ntf-1"]
    assert harness.metrics.count("MessagesRenewed") == 0 and harness.provider.calls == 0
    assert harness.max_receive_count - RESERVED_RECEIVES > 0


def test_an_escalation_primary_dead_lettered_past_the_tolerance_fails_over_to_its_fallback(env: Env) -> None:
    sfn = StepFunctions()
    harness = make_harness(env, tolerance=5, rng=Shortest(), sfn=sfn)
    message = a_message(Channel.EMAIL, to="ana@example.com", task_token="token-1", escalation=True)
    harness.enqueue(message)

    run_until_dead_lettered(harness, 5)

    assert [(f["taskToken"], f["error"]) for f in sfn.failures] == [
        ("token-1", "Herald.PrimaryUndeliverable")
    ]
    assert "dead-lettered" in sfn.failures[0]["cause"]
    assert "task_token" not in harness.env.record(message)
