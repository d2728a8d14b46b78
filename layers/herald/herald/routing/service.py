"""The router's work for one ingest batch: batched reads, then per record defer / fan out / route."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from pydantic import ValidationError

from herald.batch import RejectedRecord
from herald.catalog import Catalog, UnknownNotificationType
from herald.dispatch import Deferrer, Dispatcher, send_batches
from herald.ingest import HeraldControl, IngestEnvelope, decode_cursor, encode_cursor
from herald.models import Channel, Urgency
from herald.routing.decision import Decision, RoutingInput, decide
from herald.settings import RouterSettings
from herald.stores.dynamo import batch_get
from herald.stores.keys import email_address, push_address, rate_counter_key, sms_address
from herald.stores.notifications import NotificationRecord, NotificationStore
from herald.stores.presence import Presence, presence_from_item, presence_key
from herald.stores.rate_counters import RateCounterStore
from herald.stores.suppression import SuppressionStore
from herald.stores.users import UserStore, profile_from_item, profile_key
from herald.users import UserProfile

logger = Logger(child=True)


@dataclass
class RoutingSnapshot:
    """What the batch's decisions need, read with batched calls (never one call per record)."""

    profiles: dict[str, UserProfile] = field(default_factory=dict)
    broken_profiles: dict[str, str] = field(default_factory=dict)
    presence: dict[str, Presence] = field(default_factory=dict)
    suppressed: frozenset[str] = frozenset()
    rate_usage: dict[tuple[str, Channel], int] = field(default_factory=dict)
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
        self._suppression = SuppressionStore(dynamodb, tables.suppression)
        self._notifications = NotificationStore(dynamodb, tables.notifications)
        self._rate_counters = RateCounterStore(dynamodb, tables.rate_counters)
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

    # -- batched reads ---------------------------------------------------------------------------

    def prefetch(self, envelopes: Iterable[IngestEnvelope]) -> RoutingSnapshot:
        """Two BatchGetItem rounds for the whole batch: (users, presence, rate counters), then the
        suppression entries of the contacts those profiles hold."""
        now = self._clock()
        user_ids = sorted(
            {
                e.request.user_id
                for e in envelopes
                if e.request.user_id and not self._waits_for_send_at(e, now)
            }
        )
        snapshot = RoutingSnapshot(loaded_users=frozenset(user_ids))
        if user_ids:
            self._load_users_presence_counters(snapshot, user_ids, now)
            addresses = [a for p in snapshot.profiles.values() for a in contact_addresses(p)]
            snapshot.suppressed = self._suppression.suppressed_among(addresses)
        self._snapshot = snapshot
        return snapshot

    def _load_users_presence_counters(
        self, snapshot: RoutingSnapshot, user_ids: list[str], now: datetime
    ) -> None:
        tables = self._settings.tables
        limited = sorted(self._settings.rate_limits)
        found = batch_get(
            self._dynamodb,
            {
                tables.users: [profile_key(u) for u in user_ids],
                tables.presence: [presence_key(u) for u in user_ids],
                tables.rate_counters: [
                    {"pk": rate_counter_key(u, c, now)} for u in user_ids for c in limited
                ],
            },
        )
        for item in found[tables.users]:
            user_id = item.get("user_id") or item["pk"].removeprefix("USER#")
            try:
                snapshot.profiles[user_id] = profile_from_item(item)
            except ValidationError as error:
                snapshot.broken_profiles[user_id] = str(error)
        for item in found[tables.presence]:
            presence = presence_from_item(item)
            snapshot.presence[presence.user_id] = presence
        for item in found[tables.rate_counters]:
            user_id, channel, _hour = item["pk"].rsplit("#", 2)
            snapshot.rate_usage[(user_id, Channel(channel))] = int(item.get("count", 0))

    # -- one record --------------------------------------------------------------------------------

    @staticmethod
    def _waits_for_send_at(envelope: IngestEnvelope, now: datetime) -> bool:
        released = envelope.herald is not None and envelope.herald.phase == "release"
        return not released and envelope.request.due_later(now)

    def route(self, envelope: IngestEnvelope) -> dict[str, Any]:
        """The idempotent unit of work for one ingest record."""
        request = envelope.request
        try:
            entry = self._catalog.entry(request.type)
        except UnknownNotificationType as error:
            raise RejectedRecord(str(error), request.event_id) from error
        missing = entry.missing_data(request.data)
        if missing:
            raise RejectedRecord(f"{request.type} requires data fields {missing}", request.event_id)
        now = self._clock()
        if self._waits_for_send_at(envelope, now):
            return self._defer_until_send_at(envelope)
        if request.audience is not None:
            return self._fan_out(envelope)
        return self._route_to_user(envelope, entry, now)

    def _defer_until_send_at(self, envelope: IngestEnvelope) -> dict[str, Any]:
        request = envelope.request
        assert request.send_at is not None
        released = envelope.model_copy(update={"herald": HeraldControl(phase="release")})
        name = "send-at-" + hashlib.sha256(envelope.idempotency_key.encode()).hexdigest()[:32]
        scheduled = self._deferrer.defer(
            name,
            request.send_at,
            self._settings.ingest_queue_url,
            self._settings.ingest_queue_arn,
            released.body(),
        )
        self._metrics.add_metric(name="RequestsDeferred", unit=MetricUnit.Count, value=1)
        logger.info(
            "request deferred to send_at", extra={"event_id": request.event_id, "scheduled": scheduled}
        )
        return {"status": "deferred", "send_at": request.send_at.isoformat()}

    def _fan_out(self, envelope: IngestEnvelope) -> dict[str, Any]:
        """One page of the role's members becomes per-user requests; the next page is a continuation."""
        request = envelope.request
        assert request.audience is not None
        cursor = envelope.herald.fanout_cursor if envelope.herald else None
        phase = envelope.herald.phase if envelope.herald else None
        user_ids, next_key = self._users.user_ids_with_role(
            request.audience.role,
            self._settings.fanout_page_size,
            decode_cursor(cursor) if cursor else None,
        )
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
        send_batches(self._sqs, self._settings.ingest_queue_url, bodies)
        self._metrics.add_metric(name="FanOutRecipients", unit=MetricUnit.Count, value=len(user_ids))
        logger.info(
            "audience page fanned out",
            extra={"event_id": request.event_id, "role": request.audience.role, "recipients": len(user_ids)},
        )
        return {"status": "fanned_out", "recipients": len(user_ids), "more": bool(next_key)}

    def _route_to_user(self, envelope: IngestEnvelope, entry: Any, now: datetime) -> dict[str, Any]:
        request = envelope.request
        user_id = request.user_id
        assert user_id is not None
        snapshot = self._snapshot if user_id in self._snapshot.loaded_users else self.prefetch([envelope])
        if user_id in snapshot.broken_profiles:
            raise RejectedRecord(f"profile of user {user_id} is invalid: {snapshot.broken_profiles[user_id]}")
        presence = snapshot.presence.get(user_id)
        decision = decide(
            RoutingInput(
                request=request,
                entry=entry,
                user=snapshot.profiles.get(user_id),
                online=bool(presence and presence.online_at(now, self._settings.presence_max_age_seconds)),
                suppressed=snapshot.suppressed,
                rate_usage=snapshot.usage_for(user_id),
                rate_limits=self._settings.rate_limits,
                now=now,
                digest_delay=timedelta(seconds=self._settings.digest_delay_seconds),
                recipient_key=envelope.recipient_key,
            )
        )
        self._record(decision, envelope, now)
        report = self._dispatcher.dispatch(decision, request, entry)
        self._count_sends(decision, snapshot, now)
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

    def _record(self, decision: Decision, envelope: IngestEnvelope, now: datetime) -> None:
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
            escalation=decision.escalation is not None,
            expires_at=int((now + timedelta(days=self._settings.notification_retention_days)).timestamp()),
            **(NotificationRecord.digest_fields(decision.digest_due_at) if decision.digest_due_at else {}),
        )
        if not self._notifications.create(record):
            logger.info(
                "notification record already written", extra={"notification_id": record.notification_id}
            )

    def _count_sends(self, decision: Decision, snapshot: RoutingSnapshot, now: datetime) -> None:
        """Count what was planned against the user's hourly limits. Critical is exempt; an escalation
        counts its primary only (its email may never be sent)."""
        if decision.urgency is Urgency.CRITICAL:
            return
        channels = [d.channel for d in decision.deliveries]
        if decision.escalation:
            channels.append(decision.escalation.primary.channel)
        for channel in channels:
            if channel in self._settings.rate_limits:
                self._rate_counters.add(decision.user_id, channel, now)
                key = (decision.user_id, channel)
                snapshot.rate_usage[key] = snapshot.rate_usage.get(key, 0) + 1
