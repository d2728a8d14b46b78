"""The push sender sends a batch's records together (issue 12 item 4, decision 026), through the
real handler on moto and the FCM sandbox: every message of the batch in one concurrent send, the
batch's suppression entries in one batched read, and each record's outcome on its own, with the
sender's guarantees (at most once, the outage budget, the deadline) per record."""

from __future__ import annotations

import threading
import time
from collections import Counter
from typing import Any

import pytest

from herald.messages import ChannelMessage
from herald.models import Category, Channel, Urgency
from herald.stores.keys import push_address
from herald.stores.suppression import SuppressionStore
from tests.integration.channels.conftest import Env, a_message, a_profile, handle

pytestmark = pytest.mark.integration

LATENCY_MS = 300


def push_for(n: int, tokens: list[str], **overrides: Any) -> ChannelMessage:
    return a_message(
        Channel.PUSH,
        notification_id=f"ntf-{n}",
        event_id=f"evt-{n}",
        user_id=f"u{n}",
        device_tokens=tokens,
        **overrides,
    )


def devices(*tokens: str) -> dict[str, Any]:
    return {t: {"platform": "android", "registered_at": "2026-01-01T00:00:00Z"} for t in tokens}


def enqueue_batch(env: Env, messages: list[ChannelMessage], *, records: bool = True) -> dict[str, Any]:
    for message in messages:
        env.put_profile(a_profile(message.user_id, devices=devices(*message.device_tokens)))
        if records:
            env.create_record(message)
    env.enqueue("Push", *(m.queue_body() for m in messages))
    return env.receive_event("Push", expected=len(messages))


def message_id_of(event: dict[str, Any], message: ChannelMessage) -> str:
    (record,) = [r for r in event["Records"] if f'"{message.notification_id}"' in r["body"]]
    return str(record["messageId"])


def count_calls(client: Any) -> Counter[str]:
    calls: Counter[str] = Counter()
    client.meta.events.register("before-call.dynamodb.*", lambda model, **_: calls.update([model.name]))
    return calls


class InFlight:
    def __init__(self) -> None:
        self.now = 0
        self.peak = 0
        self._lock = threading.Lock()

    def __enter__(self) -> None:
        with self._lock:
            self.now += 1
            self.peak = max(self.peak, self.now)

    def __exit__(self, *exc: object) -> None:
        with self._lock:
            self.now -= 1


def in_flight_fcm_requests(monkeypatch: pytest.MonkeyPatch) -> InFlight:
    """Counts the firebase-admin sends in progress at once (each holds its request to the sandbox)."""
    from firebase_admin import messaging

    counter = InFlight()
    real_send = messaging._MessagingService.send

    def counted_send(self: Any, message: Any, dry_run: bool = False) -> str:
        with counter:
            return real_send(self, message, dry_run)

    monkeypatch.setattr(messaging._MessagingService, "send", counted_send)
    return counter


def sent_to(env: Env) -> list[str]:
    return sorted(e.recipient for e in env.sandbox.outbox.entries(provider="fcm"))


def test_a_batch_goes_out_concurrently_after_one_suppression_read(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    messages = [push_for(i, [f"tok-{i}-{d}" for d in range(3)]) for i in range(10)]
    event = enqueue_batch(env, messages)
    app = env.app("push_sender")
    calls = count_calls(app.dynamodb)
    in_flight = in_flight_fcm_requests(monkeypatch)

    with env.sandbox.fault("fcm", latency_ms=LATENCY_MS):
        response = handle(env, app, event)

    assert response == {"batchItemFailures": []}
    assert len(sent_to(env)) == 30
    # one record after the other, at most one record's 3 requests would be in flight at once (the
    # wall time is make bench's to measure, never a unit test's)
    assert in_flight.peak > 3, f"at most {in_flight.peak} FCM requests were in flight at once"
    assert calls["BatchGetItem"] == 1  # every token of every record, before anything was sent
    assert calls["GetItem"] == 0  # no read per token
    for message in messages:
        delivery = env.record(message)["deliveries"]["push"]
        assert (delivery["state"], delivery["provider"]) == ("sent", "fcm")


def test_each_record_of_a_batch_keeps_its_own_outcome(env: Env) -> None:
    partly_dead = push_for(1, ["tok-1-live", "tok-1-dead"])
    all_dead = push_for(2, ["tok-2-dead"])
    suppressed = push_for(3, ["tok-3-suppressed"])
    throttled = push_for(4, ["tok-4-throttled"])
    too_large = push_for(
        5,
        ["tok-5"],
        type="comment_reply",
        urgency=Urgency.MEDIUM,
        category=Category.TRANSACTIONAL,
        data={"author": "Ana", "excerpt": "so long " * 600, "thread_url": "https://app.example.com/t/7"},
    )
    fine = push_for(6, ["tok-6"])
    for token in ("tok-1-dead", "tok-2-dead"):
        env.sandbox.fcm.mark_unregistered(token)
    SuppressionStore(env.client("dynamodb"), env.stack.tables["SuppressionTable"]).suppress(
        push_address("tok-3-suppressed"), reason="dead_token", source="fcm"
    )
    event = enqueue_batch(env, [partly_dead, all_dead, suppressed, throttled, too_large, fine])

    with env.sandbox.fault("fcm", status=503, match="tok-4-throttled"):
        response = handle(env, env.app("push_sender"), event)

    # only the throttled record comes back (its own backoff); every other one is settled
    assert response == {"batchItemFailures": [{"itemIdentifier": message_id_of(event, throttled)}]}
    assert sent_to(env) == ["tok-1-live", "tok-6"]  # nothing reached FCM for 3 (suppressed) nor 5
    state = {
        m.notification_id: env.record(m)["deliveries"]["push"]
        for m in (partly_dead, all_dead, suppressed, throttled, too_large, fine)
    }
    assert state["ntf-1"]["state"] == "sent"
    assert (state["ntf-2"]["state"], state["ntf-2"]["code"]) == ("not_delivered", "dead_token")
    assert (state["ntf-3"]["state"], state["ntf-3"]["code"]) == ("not_delivered", "no_live_tokens")
    assert (state["ntf-4"]["state"], state["ntf-4"]["failures"]) == ("retry", 1)
    assert (state["ntf-5"]["state"], state["ntf-5"]["code"]) == ("failed", "payload_too_large")
    assert state["ntf-6"]["state"] == "sent"
    for token, owner in (("tok-1-dead", "u1"), ("tok-2-dead", "u2")):  # dead tokens: out and suppressed
        assert env.suppressed(push_address(token))
        assert token not in env.profile(owner).devices  # type: ignore[union-attr]
    assert set(env.profile("u1").devices) == {"tok-1-live"}  # type: ignore[union-attr]


def test_two_copies_of_one_notification_in_a_batch_send_once(env: Env) -> None:
    message = push_for(1, ["tok-1"])
    env.put_profile(a_profile("u1", devices=devices("tok-1")))
    env.create_record(message)
    env.enqueue("Push", message.queue_body(), message.queue_body())

    response = handle(env, env.app("push_sender"), env.receive_event("Push", expected=2))

    assert response == {"batchItemFailures": []}
    assert sent_to(env) == ["tok-1"]
    assert [e["outcome"] for e in env.record(message)["delivery_log"]] == ["sent"]


class InvocationKilled(BaseException):
    """The Lambda runtime ending the invocation (a timeout, out of memory): nothing after it runs."""


def test_a_crash_after_the_batch_was_sent_never_sends_it_again(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    messages = [push_for(i, [f"tok-{i}"]) for i in range(3)]
    event = enqueue_batch(env, messages)
    dying = env.app("push_sender")

    def killed(*args: Any, **kwargs: Any) -> None:
        raise InvocationKilled

    monkeypatch.setattr(dying.sender._ledger, "finish", killed)  # dies before recording any outcome
    with pytest.raises(InvocationKilled):
        handle(env, dying, event)
    assert sent_to(env) == ["tok-0", "tok-1", "tok-2"]
    table = env.stack.tables["NotificationsTable"]
    for message in messages:  # the claims' leases run out; SQS then delivers the batch again
        assert env.record(message)["deliveries"]["push"]["state"] == "sending"
        env.client("dynamodb").update_item(
            TableName=table,
            Key={"user_id": {"S": message.user_id}, "notification_id": {"S": message.notification_id}},
            UpdateExpression="SET deliveries.push.claim_expires_at = :past",
            ExpressionAttributeValues={":past": {"N": "1"}},
        )

    response = handle(env, env.app("push_sender"), event)

    assert response == {"batchItemFailures": []}
    assert sent_to(env) == ["tok-0", "tok-1", "tok-2"]  # not one of them twice
    for message in messages:
        record = env.record(message)
        assert record["deliveries"]["push"]["state"] == "uncertain"
        assert [e["outcome"] for e in record["delivery_log"]] == ["uncertain"]


def test_a_batch_too_close_to_the_deadline_is_handed_back_unclaimed(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    messages = [push_for(i, [f"tok-{i}"]) for i in range(3)]
    event = enqueue_batch(env, messages)
    monkeypatch.setattr(env.context, "get_remaining_time_in_millis", lambda: 5_000)

    response = handle(env, env.app("push_sender"), event)

    assert sorted(f["itemIdentifier"] for f in response["batchItemFailures"]) == sorted(
        r["messageId"] for r in event["Records"]
    )
    assert sent_to(env) == []
    for message in messages:
        assert "push" not in env.record(message).get("deliveries", {})  # not claimed: nothing uncertain


def test_an_aws_error_on_one_claim_retries_that_record_only(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    from botocore.exceptions import ClientError

    messages = [push_for(i, [f"tok-{i}"]) for i in range(3)]
    event = enqueue_batch(env, messages)
    app = env.app("push_sender")
    claim = app.sender._ledger.claim

    def throttled_for_one(message: ChannelMessage, **kwargs: Any) -> Any:
        if message.notification_id == "ntf-1":
            error = {"Error": {"Code": "ProvisionedThroughputExceededException", "Message": "slow down"}}
            raise ClientError(error, "UpdateItem")
        return claim(message, **kwargs)

    monkeypatch.setattr(app.sender._ledger, "claim", throttled_for_one)

    response = handle(env, app, event)

    assert response == {"batchItemFailures": [{"itemIdentifier": message_id_of(event, messages[1])}]}
    assert sent_to(env) == ["tok-0", "tok-2"]


def test_the_records_are_claimed_at_once_and_nothing_is_sent_before_every_claim_is_held(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    messages = [push_for(i, [f"tok-c{i}"]) for i in range(10)]
    event = enqueue_batch(env, messages)
    app = env.app("push_sender")
    ledger = app.sender._ledger
    real_claim = ledger.claim
    lock = threading.Lock()
    running = {"now": 0, "most": 0}
    claims_done: list[float] = []
    sends_started: list[float] = []

    def slow_claim(message: ChannelMessage, **kwargs: Any) -> Any:
        with lock:
            running["now"] += 1
            running["most"] = max(running["most"], running["now"])
        time.sleep(0.5 if message.notification_id == "ntf-9" else 0.1)  # one claim is slow
        try:
            return real_claim(message, **kwargs)
        finally:
            with lock:
                running["now"] -= 1
                claims_done.append(time.monotonic())

    provider = app.sender.deliverer.provider
    real_send = provider.send_batch

    def noted_send(pushes: Any) -> Any:
        sends_started.append(time.monotonic())
        return real_send(pushes)

    monkeypatch.setattr(ledger, "claim", slow_claim)
    monkeypatch.setattr(provider, "send_batch", noted_send)

    assert handle(env, app, event) == {"batchItemFailures": []}

    assert len(claims_done) == 10 and len(sends_started) == 1
    assert sends_started[0] >= max(claims_done)  # the slow claim too was held before the send
    assert 1 < running["most"] <= 10  # claimed together, at most one thread per record
    assert len(sent_to(env)) == 10
