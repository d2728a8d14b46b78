"""The router's work for one ingest batch: batched reads, then per record defer / fan out / route."""

from __future__ import annotations

import hashlib
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from pydantic import ValidationError

from herald.batch import RejectedRecord, problems
from herald.catalog import Catalog, CatalogEntry, UnknownNotificationType
from herald.delivery import QUEUED, LogEntry
from herald.dispatch import SQS_MAX_DELAY_SECONDS, Deferrer, Dispatcher, Outbox, send_batches
from herald.ingest import HeraldControl, IngestEnvelope, decode_cursor, encode_cursor
from herald.models import Audience, Channel, NotificationRequest, Urgency
from herald.routing.decision import (
    Decision,
    EscalationPlan,
    PlannedDelivery,
    RoutingInput,
    TraceStep,
    decide,
)
from herald.routing.held import HeldRequests
from herald.settings import RouterSettings
from herald.stores.dynamo import batch_get
from herald.stores.keys import DIRECTORY_SK, email_address, push_address, sms_address
from herald.stores.notifications import NotificationRecord, NotificationStore, stamp
from herald.stores.presence import Presence, presence_from_item, presence_key
from herald.stores.rate_counters import RateCounterStore, usage_from_item
from herald.stores.suppression import SuppressionStore
from herald.stores.users import UserStore, directory_key, profile_from_item, profile_key
from herald.topics import TopicStore
from herald.users import UserProfile

logger = Logger(child=True)


@dataclass
class RoutingSnapshot:
    """What the batch's decisions need, read with batched calls (never one call per record)."""

    profiles: dict[str, UserProfile] = field(default_factory=dict)
    broken_profiles: dict[str, str] = field(default_factory=dict)
    presence: dict[str, Presence] = field(default_factory=dict)
    # the suppressed ones among the batch's contacts, each with why (for the trace)
    suppression_notes: dict[str, str] = field(default_factory=dict)
    rate_usage: dict[tuple[str, Channel], int] = field(default_factory=dict)
    # people with a directory tombstone (deleted or erased): nothing is written about them again
    erased: set[str] = field(default_factory=set)
    loaded_users: frozenset[str] = frozenset()

    def usage_for(self, user_id: str) -> dict[Channel, int]:
        return {channel: count for (uid, channel), count in self.rate_usage.items() if uid == user_id}


def contact_addresses(profile: UserProfile) -> list[str]:
    addresses = [push_address(token) for token in profile.devices]
    if profile.email:
        addresses.append(email_address(profile.email))
    if profile.phone:
        addresses.append(sms_address(profile.phone))
    return addresses


def replay(record: NotificationRecord, fresh: Decision) -> Decision:
    """The decision stored on `record`, to dispatch again exactly as first decided."""
    deliveries = [PlannedDelivery.model_validate(p) for p in record.plan if "escalation" not in p]
    escalations = [EscalationPlan.model_validate(p["escalation"]) for p in record.plan if "escalation" in p]
    return fresh.model_copy(
        update={
            "deliveries": tuple(deliveries),
            "escalation": escalations[0] if escalations else None,
            "trace": tuple(TraceStep.model_validate(step) for step in record.decision),
        }
    )


def queued_log(decision: Decision, now: datetime) -> list[dict[str, Any]]:
    """The delivery log's first entries, written with the record: each channel handed to its sender
    (`queued`), and an escalation's first step with what may follow it. Later steps log themselves."""
    entries = []
    for delivery in decision.deliveries:
        later = delivery.not_before is not None and delivery.not_before > now
        detail = f"not before {delivery.not_before.isoformat()}" if later and delivery.not_before else None
        entries.append(LogEntry(delivery.channel, QUEUED, detail=detail).item(now))
    if decision.escalation:
        plan = decision.escalation
        steps = plan.steps
        detail = f"escalation step 1 of {len(steps)}; then {steps[1].delivery.channel}"
        if steps[0].wait_seconds is not None:
            detail += f" if not {steps[0].until} within {steps[0].wait_seconds} s"
        if plan.deliver_at > now:
            detail += f"; starts {plan.deliver_at.isoformat()}"
        entries.append(LogEntry(plan.primary.channel, QUEUED, detail=detail).item(now))
    return entries


class RouterService:
    def __init__(
        self,
        *,
        dynamodb: Any,
        sqs: Any,
        scheduler: Any,
        sfn: Any,
        settings: RouterSettings,
        catalog: Catalog,
        metrics: Metrics,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._dynamodb = dynamodb
        self._sqs = sqs
        self._settings = settings
        self._catalog = catalog
        self._metrics = metrics
        self._clock = clock
        tables = settings.tables
        self._users = UserStore(dynamodb, tables.users)
        self._topics = TopicStore(dynamodb, tables.users)
        self._suppression = SuppressionStore(dynamodb, tables.suppression)
        self._notifications = NotificationStore(dynamodb, tables.notifications)
        self._rate_counters = RateCounterStore(dynamodb, tables.rate_counters)
        self._held = HeldRequests(
            dynamodb, tables.notifications, timedelta(days=settings.notification_retention_days)
        )
        self._deferrer = Deferrer(sqs, scheduler, settings.scheduler_role_arn, settings.schedule_group, clock)
        self._dispatcher = Dispatcher(
            sqs,
            sfn,
            self._deferrer,
            settings.queues,
            settings.escalation_state_machine_arn,
            settings.fallback_delay_seconds,
        )
        self._snapshot = RoutingSnapshot()
        self._outbox: Outbox | None = None
        # each record's sends to count when its batch ends: owner -> person -> channel -> count
        self._sends: dict[str, dict[str, Counter[Channel]]] = {}

    # -- batched reads ---------------------------------------------------------------------------

    def prefetch(self, envelopes: Iterable[IngestEnvelope]) -> RoutingSnapshot:
        """Two BatchGetItem rounds for the whole batch: (users, presence, rate counters), then the
        suppression entries of the contacts those profiles hold. Replaces the batch's snapshot."""
        self._snapshot = self._read(envelopes)
        return self._snapshot

    # -- one batch's writes ----------------------------------------------------------------------

    def begin_batch(self) -> None:
        """From now on, `route(..., owner=...)` puts its channel messages in the batch's outbox and
        its sends in the batch's counts; `end_batch` sends and counts them."""
        self._outbox = Outbox()
        self._sends = {}

    def abandon(self, owner: str) -> None:
        """The record `owner` failed after planning: its messages are not sent, its sends not counted."""
        if self._outbox is not None:
            self._outbox.discard(owner)
        self._sends.pop(owner, None)

    def end_batch(self) -> dict[str, str]:
        """Send the batch's channel messages (`SendMessageBatch` shared across records), then count
        the sends of the records whose messages all went (one `TransactWriteItems` per 100 people).
        Returns the owners a queue refused, with why: SQS retries those records, which replay their
        stored plans (a replay is never counted: the counts of a refused record, or of a batch that
        died before this point, are lost). A counting error is logged and counted
        (`RateCountsLost`), never raised: the messages are out."""
        outbox, self._outbox = self._outbox, None
        sends, self._sends = self._sends, {}
        refused = outbox.flush(self._sqs) if outbox is not None else {}
        for owner, reason in refused.items():
            logger.error(
                "a queue refused channel messages: the record is retried",
                extra={"owner": owner, "reason": reason},
            )
        totals: dict[str, Counter[Channel]] = defaultdict(Counter)
        for owner, people in sends.items():
            if owner not in refused:
                for user_id, channels in people.items():
                    totals[user_id].update(channels)
        if totals:
            token = hashlib.sha256("|".join(sorted(sends)).encode()).hexdigest()
            try:
                lost = self._rate_counters.add_many(totals, self._clock(), request_token=token)
            except Exception:  # the messages are out: a counting error must not retry the batch
                logger.exception("rate counters not updated", extra={"people": len(totals)})
                lost = len(totals)
            if lost:
                self._metrics.add_metric(name="RateCountsLost", unit=MetricUnit.Count, value=lost)
        return refused

    def _snapshot_with(self, envelope: IngestEnvelope) -> RoutingSnapshot:
        """The batch's snapshot, extended with a recipient it did not know (a `send_at` that fell due
        between the batch read and its routing) without dropping what the batch already read."""
        user_id = envelope.request.user_id
        if user_id in self._snapshot.loaded_users:
            return self._snapshot
        extra = self._read([envelope], force=True)
        snapshot = self._snapshot
        snapshot.profiles.update(extra.profiles)
        snapshot.broken_profiles.update(extra.broken_profiles)
        snapshot.erased |= extra.erased
        snapshot.presence.update(extra.presence)
        snapshot.suppression_notes.update(extra.suppression_notes)
        for key, count in extra.rate_usage.items():
            snapshot.rate_usage.setdefault(key, count)
        snapshot.loaded_users |= extra.loaded_users
        return snapshot

    def _read(self, envelopes: Iterable[IngestEnvelope], force: bool = False) -> RoutingSnapshot:
        now = self._clock()
        user_ids = sorted(
            {
                e.request.user_id
                for e in envelopes
                if e.request.user_id and (force or not self._waits_for_send_at(e, now))
            }
        )
        snapshot = RoutingSnapshot(loaded_users=frozenset(user_ids))
        if user_ids:
            self._load_users_presence_counters(snapshot, user_ids, now)
            addresses = [a for p in snapshot.profiles.values() for a in contact_addresses(p)]
            snapshot.suppression_notes = self._suppression.notes(addresses)
        return snapshot

    def _load_users_presence_counters(
        self, snapshot: RoutingSnapshot, user_ids: list[str], now: datetime
    ) -> None:
        tables = self._settings.tables
        limited = sorted(self._settings.rate_limits)
        found = batch_get(
            self._dynamodb,
            {
                tables.users: [k for u in user_ids for k in (profile_key(u), directory_key(u))],
                tables.presence: [presence_key(u) for u in user_ids],
                tables.rate_counters: [self._rate_counters.key(u, now) for u in user_ids] if limited else [],
            },
        )
        for item in found[tables.users]:
            user_id = item.get("user_id") or item["pk"].removeprefix("USER#")
            if item.get("sk") == DIRECTORY_SK:
                if "deleted_at" in item:
                    snapshot.erased.add(user_id)
                continue
            try:
                snapshot.profiles[user_id] = profile_from_item(item)
            except ValidationError as error:
                # field paths and messages only: pydantic's text echoes the values (addresses, phones)
                snapshot.broken_profiles[user_id] = problems(error)
        for item in found[tables.presence]:
            try:
                presence = presence_from_item(item)
            except ValidationError:
                logger.warning("malformed presence item ignored (offline)", extra={"item": str(item)[:300]})
                continue
            snapshot.presence[presence.user_id] = presence
        for item in found[tables.rate_counters]:
            try:
                user_id = item["pk"].rsplit("#", 1)[0]
                for channel, count in usage_from_item(item).items():
                    snapshot.rate_usage[(user_id, channel)] = count
            except (ValueError, TypeError, KeyError):
                logger.warning("malformed rate counter ignored", extra={"item": str(item)[:300]})

    # -- one record --------------------------------------------------------------------------------

    def defers(self, envelope: IngestEnvelope) -> bool:
        """Routing `envelope` now only defers it to its `send_at` (the caller keeps that idempotent)."""
        return self._waits_for_send_at(envelope, self._clock())

    @staticmethod
    def _waits_for_send_at(envelope: IngestEnvelope, now: datetime) -> bool:
        released = envelope.herald is not None and envelope.herald.phase == "release"
        return not released and envelope.request.due_later(now)

    def _entry(self, request: NotificationRequest) -> CatalogEntry:
        """The request's catalog entry, or `RejectedRecord` saying what is wrong with the request."""
        try:
            entry = self._catalog.entry(request.type)
        except UnknownNotificationType as error:
            raise RejectedRecord(str(error), request.event_id) from error
        missing = entry.missing_data(request.data)
        if missing:
            raise RejectedRecord(f"{request.type} requires data fields {missing}", request.event_id)
        problem = entry.urgency_problem(request.urgency) if request.urgency else None
        if problem:
            raise RejectedRecord(problem, request.event_id)
        return entry

    def route(self, envelope: IngestEnvelope, owner: str = "") -> dict[str, Any]:
        """The idempotent unit of work for one ingest record (`owner`: its SQS message id; within
        `begin_batch`/`end_batch` its channel messages wait for the batch's end). A person's
        notification is idempotent by its record; a fan-out page and a deferral are kept idempotent
        by the handler (powertools' idempotency, decision 030)."""
        if envelope.herald is not None and envelope.herald.held:
            envelope = self._release_held(envelope.herald.held, envelope.request.event_id)
        request = envelope.request
        entry = self._entry(request)
        now = self._clock()
        if self._waits_for_send_at(envelope, now):
            return self._defer_until_send_at(envelope)
        if request.audience is not None:
            return self._fan_out(envelope)
        return self._route_to_user(envelope, entry, now, owner)

    def _defer_until_send_at(self, envelope: IngestEnvelope) -> dict[str, Any]:
        request = envelope.request
        assert request.send_at is not None
        control = (envelope.herald or HeraldControl()).model_copy(update={"phase": "release"})
        released = envelope.model_copy(update={"herald": control})
        name = "send-at-" + hashlib.sha256(envelope.idempotency_key.encode()).hexdigest()[:32]
        delay = self._deferrer.delay_seconds(request.send_at)
        scheduled = delay > SQS_MAX_DELAY_SECONDS
        if scheduled:
            # A Scheduler input must not hold the request's data: hold it here, schedule a reference.
            self._held.hold(name, released, request.send_at)
            reference = released.model_copy(
                update={
                    "detail": request.model_copy(update={"data": {}}),
                    "herald": control.model_copy(update={"held": name}),
                }
            )
            self._deferrer.schedule(name, request.send_at, self._settings.ingest_queue_arn, reference.body())
        else:
            send_batches(self._sqs, self._settings.ingest_queue_url, [(released.body(), delay)])
        self._metrics.add_metric(name="RequestsDeferred", unit=MetricUnit.Count, value=1)
        logger.info(
            "request deferred to send_at", extra={"event_id": request.event_id, "scheduled": scheduled}
        )
        return {"status": "deferred", "send_at": request.send_at.isoformat()}

    def _release_held(self, name: str, event_id: str) -> IngestEnvelope:
        held = self._held.get(name)
        if held is None:
            raise RejectedRecord(f"the held request {name} is not in the notifications table", event_id)
        return held

    def _audience_page(
        self, audience: Audience, cursor: dict[str, Any] | None
    ) -> tuple[list[str], dict[str, Any] | None]:
        size = self._settings.fanout_page_size
        if audience.role is not None:
            return self._users.user_ids_with_role(audience.role, size, cursor)
        if audience.topic is not None:
            return self._topics.followers(audience.topic, size, cursor)
        return self._users.everyone(size, cursor)

    def _fan_out(self, envelope: IngestEnvelope) -> dict[str, Any]:
        """One page of the audience becomes per-user requests, and the next page a continuation, on
        the broadcast queue (routed at a bounded concurrency: decision 027). A crash mid-page sends
        the page again: each recipient's request is idempotent (`event_id#user_id`), and so is the
        continuation (`@page:<cursor>`)."""
        request = envelope.request
        assert request.audience is not None
        cursor = envelope.herald.fanout_cursor if envelope.herald else None
        phase = envelope.herald.phase if envelope.herald else None
        user_ids, next_key = self._audience_page(request.audience, decode_cursor(cursor) if cursor else None)
        members = [
            envelope.model_copy(
                update={
                    "detail": request.model_copy(update={"user_id": user_id, "audience": None}),
                    "herald": HeraldControl(phase=phase, fanout_of=request.event_id),
                }
            ).body()
            for user_id in user_ids
        ]
        bodies = [(body, 0) for body in members]
        if next_key:
            continuation = envelope.model_copy(
                update={"herald": HeraldControl(fanout_cursor=encode_cursor(next_key))}
            )
            bodies.append((continuation.body(), 0))
        send_batches(self._sqs, self._settings.broadcast_queue_url, bodies)
        self._metrics.add_metric(name="FanOutRecipients", unit=MetricUnit.Count, value=len(user_ids))
        logger.info(
            "audience page fanned out",
            extra={
                "event_id": request.event_id,
                "audience": request.audience.describe(),
                "recipients": len(user_ids),
                "more": bool(next_key),
            },
        )
        return {"status": "fanned_out", "recipients": len(user_ids), "more": bool(next_key)}

    def _route_to_user(
        self, envelope: IngestEnvelope, entry: CatalogEntry, now: datetime, owner: str
    ) -> dict[str, Any]:
        request = envelope.request
        user_id = request.user_id
        assert user_id is not None
        snapshot = self._snapshot_with(envelope)
        if user_id in snapshot.erased:
            # a request for a deleted person (new, repeated or redriven): no record, no data, no send
            self._metrics.add_metric(name="RoutedToErasedPerson", unit=MetricUnit.Count, value=1)
            logger.info("the recipient was deleted: nothing routed", extra={"event_id": request.event_id})
            return {"status": "recipient_erased"}
        decision = self._decide(envelope, entry, snapshot, now)
        existing = self._record(decision, envelope, now)
        if existing is not None:
            # An earlier attempt decided already (a repeated event, a retry after a partial
            # dispatch): dispatch what was decided then, never a new decision; the senders' claims
            # keep a message queued twice from being sent twice.
            decision = replay(existing, decision)
        report = self._dispatcher.dispatch(decision, request, entry, self._outbox, owner)
        if existing is None:
            self._count_sends(decision, snapshot, now, owner)
        self._metrics.add_metric(name=f"Routed_{decision.status}", unit=MetricUnit.Count, value=1)
        logger.info(
            "notification routed",
            extra={
                "event_id": request.event_id,
                "notification_id": decision.notification_id,
                "user_id": user_id,
                "status": decision.status,
                "queued": [c.value for c in report.queued],
                "scheduled": [c.value for c in report.scheduled],
                "escalation": report.escalation_started,
            },
        )
        return {
            "status": decision.status,
            "notification_id": decision.notification_id,
            "channels": sorted(c.value for c in decision.planned_channels),
        }

    def explain(self, envelope: IngestEnvelope) -> Decision:
        """What routing `envelope` would decide now, with the same reads and rules, writing and sending
        nothing (`herald explain`). A request the router would reject raises `RejectedRecord`."""
        request = envelope.request
        entry = self._entry(request)
        now = self._clock()
        self._snapshot = self._read([envelope], force=True)
        return self._decide(envelope, entry, self._snapshot, now)

    def _decide(
        self, envelope: IngestEnvelope, entry: CatalogEntry, snapshot: RoutingSnapshot, now: datetime
    ) -> Decision:
        request = envelope.request
        user_id = request.user_id
        assert user_id is not None
        if user_id in snapshot.broken_profiles:
            raise RejectedRecord(f"profile of user {user_id} is invalid: {snapshot.broken_profiles[user_id]}")
        presence = snapshot.presence.get(user_id)
        return decide(
            RoutingInput(
                request=request,
                entry=entry,
                user=snapshot.profiles.get(user_id),
                online=bool(presence and presence.online_at(now, self._settings.presence_max_age_seconds)),
                suppressed=frozenset(snapshot.suppression_notes),
                suppression_notes=snapshot.suppression_notes,
                rate_usage=snapshot.usage_for(user_id),
                rate_limits=self._settings.rate_limits,
                now=now,
                digest_delay=timedelta(seconds=self._settings.digest_delay_seconds),
                fallback_delay=timedelta(seconds=self._settings.fallback_delay_seconds),
                recipient_key=envelope.recipient_key,
            )
        )

    def _record(
        self, decision: Decision, envelope: IngestEnvelope, now: datetime
    ) -> NotificationRecord | None:
        """Write the notification; None when written now, the stored record when it already existed."""
        request = envelope.request
        plan = [d.model_dump(mode="json", exclude_none=True) for d in decision.deliveries]
        if decision.escalation:
            plan.append({"escalation": decision.escalation.model_dump(mode="json", exclude_none=True)})
        record = NotificationRecord(
            user_id=decision.user_id,
            notification_id=decision.notification_id,
            event_id=request.event_id,
            type=request.type,
            category=decision.category,
            urgency=decision.urgency,
            locale=decision.locale,
            data=request.data,
            created_at=now,
            status=decision.status,
            decision=[step.model_dump(mode="json", exclude_none=True) for step in decision.trace],
            plan=plan,
            delivery_log=queued_log(decision, now),
            escalation=decision.escalation is not None,
            expires_at=int((now + timedelta(days=self._settings.notification_retention_days)).timestamp()),
            inbox=decision.inbox,
            unread_at=stamp(now) if decision.inbox else None,
            **(NotificationRecord.digest_fields(decision.digest_due_at) if decision.digest_due_at else {}),
        )
        existing = self._notifications.create_or_existing(record)
        if existing is not None:
            logger.info(
                "notification already decided: replaying its plan",
                extra={"notification_id": record.notification_id},
            )
            self._metrics.add_metric(name="RepeatsReplayed", unit=MetricUnit.Count, value=1)
        return existing

    def _count_sends(self, decision: Decision, snapshot: RoutingSnapshot, now: datetime, owner: str) -> None:
        """Count what was planned against the user's hourly limits (only the channels that have
        one): in the snapshot at once, for the batch's later records, and in the table when the
        batch ends (or now, outside a batch). Critical is exempt; an escalation counts its first
        step only (the later ones may never be sent)."""
        if decision.urgency is Urgency.CRITICAL:
            return
        channels = [d.channel for d in decision.deliveries]
        if decision.escalation:
            channels.append(decision.escalation.primary.channel)
        counted = Counter(c for c in channels if c in self._settings.rate_limits)
        if not counted:
            return
        for channel, count in counted.items():
            key = (decision.user_id, channel)
            snapshot.rate_usage[key] = snapshot.rate_usage.get(key, 0) + count
        if self._outbox is None:
            self._rate_counters.add_many({decision.user_id: counted}, now)
        else:
            self._sends.setdefault(owner, {}).setdefault(decision.user_id, Counter()).update(counted)
