"""The routing decision: DESIGN §3 steps 2–7 as one pure function (no AWS, no clock of its own).

Step 1 (idempotency) belongs to the router handler. Every rule appends its verdict to the trace,
so support can answer "why did user 42 get no email?" from the notification record alone.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from herald.catalog import CatalogEntry, ChainStep
from herald.models import MANDATORY_CATEGORIES, Category, Channel, NotificationRequest, Urgency
from herald.routing.quiet_hours import quiet_hours_end
from herald.stores.keys import email_address, push_address, sms_address
from herald.users import UserProfile

DEFERRABLE_IN_QUIET_HOURS = frozenset({Channel.PUSH, Channel.SMS})


class Verdict(StrEnum):
    PASS = "pass"
    BLOCK = "block"
    DEFER = "defer"
    PLAN = "plan"
    SKIP = "skip"


class TraceStep(BaseModel):
    model_config = ConfigDict(frozen=True)

    rule: str
    verdict: Verdict
    reason: str
    channel: Channel | None = None


class PlannedDelivery(BaseModel):
    model_config = ConfigDict(frozen=True)

    channel: Channel
    to: str | None = None
    device_tokens: tuple[str, ...] = ()
    not_before: datetime | None = None


class EscalationStep(BaseModel):
    """One step of an escalation: its delivery, and what ends the wait before the next step."""

    model_config = ConfigDict(frozen=True)

    delivery: PlannedDelivery
    # Before the next step: wait this long for an acknowledgement (or, with until="delivered", for
    # the delivery itself). None on the last step (nothing follows it).
    wait_seconds: int | None = None
    until: Literal["acknowledged", "delivered"] = "acknowledged"


class EscalationPlan(BaseModel):
    """High urgency: the chain's steps in order, each sent when the one before was not
    acknowledged in time or could not be delivered; starts at `deliver_at`."""

    model_config = ConfigDict(frozen=True)

    steps: tuple[EscalationStep, ...] = Field(min_length=2)
    deliver_at: datetime

    @model_validator(mode="before")
    @classmethod
    def _from_primary_and_fallback(cls, raw: Any) -> Any:
        """A plan stored before chains (primary, then the email fallback) replays as their chain."""
        if isinstance(raw, dict) and "primary" in raw and "steps" not in raw:
            raw = {
                "steps": [{"delivery": raw["primary"]}, {"delivery": raw["fallback"]}],
                "deliver_at": raw["deliver_at"],
            }
        return raw

    @property
    def primary(self) -> PlannedDelivery:
        return self.steps[0].delivery

    @property
    def channels(self) -> tuple[Channel, ...]:
        return tuple(step.delivery.channel for step in self.steps)


class Decision(BaseModel):
    model_config = ConfigDict(frozen=True)

    notification_id: str
    user_id: str
    urgency: Urgency
    category: Category
    locale: str
    trace: tuple[TraceStep, ...]
    deliveries: tuple[PlannedDelivery, ...] = ()
    escalation: EscalationPlan | None = None
    digest_due_at: datetime | None = None
    inbox: bool = True

    @property
    def planned_channels(self) -> frozenset[Channel]:
        channels = {d.channel for d in self.deliveries}
        if self.escalation:
            channels |= set(self.escalation.channels)
        return frozenset(channels)

    @property
    def status(self) -> str:
        if self.deliveries or self.escalation:
            return "dispatched"
        return "inbox_only" if self.inbox else "skipped"


@dataclass(frozen=True)
class RoutingInput:
    """Everything the decision needs, read by the handler in batched calls."""

    request: NotificationRequest
    entry: CatalogEntry
    user: UserProfile | None
    online: bool
    suppressed: frozenset[str]
    rate_usage: Mapping[Channel, int]
    rate_limits: Mapping[Channel, int]
    now: datetime
    digest_delay: timedelta = timedelta(hours=24)
    fallback_delay: timedelta = timedelta(minutes=5)  # a chain step's default wait for an acknowledgement
    recipient_key: str | None = None  # event_id, or event_id#user_id for a fan-out member
    # why each suppressed address is (`SuppressionStore.notes`), for the trace; read with `suppressed`
    suppression_notes: Mapping[str, str] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return self.recipient_key or self.request.event_id


def notification_id_for(idempotency_key: str) -> str:
    """Deterministic: a re-routed event maps to the same notification (and execution name)."""
    return "ntf-" + hashlib.sha256(idempotency_key.encode()).hexdigest()[:32]


# The urgency table: the channels each urgency may consider (before the user's own rules).
URGENCY_CANDIDATES: dict[Urgency, tuple[Channel, ...]] = {
    Urgency.CRITICAL: (Channel.PUSH, Channel.SMS, Channel.EMAIL, Channel.REALTIME),
    Urgency.HIGH: (Channel.REALTIME, Channel.PUSH, Channel.SMS, Channel.EMAIL),  # the chain picks
    Urgency.MEDIUM: (Channel.REALTIME, Channel.PUSH, Channel.EMAIL),
    Urgency.LOW: (Channel.EMAIL,),
    Urgency.SYSTEM: (Channel.WEBHOOK,),
}


@dataclass
class _Trace:
    steps: list[TraceStep] = field(default_factory=list)

    def add(self, rule: str, verdict: Verdict, reason: str, channel: Channel | None = None) -> None:
        self.steps.append(TraceStep(rule=rule, verdict=verdict, reason=reason, channel=channel))


def decide(given: RoutingInput) -> Decision:
    request, entry, user = given.request, given.entry, given.user
    urgency = request.urgency or entry.urgency
    trace = _Trace()
    trace.add("idempotency", Verdict.PASS, f"first delivery of {given.key}")
    user_id = request.user_id or ""
    base = {
        "notification_id": notification_id_for(given.key),
        "user_id": user_id,
        "urgency": urgency,
        "category": entry.category,
        "locale": request.locale or (user.locale if user else "en"),
    }
    if user is None:
        trace.add("recipient", Verdict.SKIP, f"no profile for user {user_id!r}")
        return Decision(**base, trace=tuple(trace.steps), inbox=False)

    candidates = [c for c in URGENCY_CANDIDATES[urgency] if c in entry.channels]
    if urgency is not entry.urgency:
        trace.add("urgency", Verdict.PASS, f"{urgency} (producer override of {entry.urgency})")

    if not _preferences_allow(given, urgency, trace):
        return Decision(**base, trace=tuple(trace.steps), inbox=False)
    available = _channel_opt_ins(given, candidates, trace)
    available = _suppression_and_contacts(given, available, trace)
    available = _presence(given, urgency, available, trace)
    quiet_end = _quiet_hours(given, urgency, available, trace)
    available = _rate_limits(given, urgency, available, trace)
    return _plan(given, base, urgency, available, quiet_end, trace)


def _preferences_allow(given: RoutingInput, urgency: Urgency, trace: _Trace) -> bool:
    """Step 2a: category and type opt-outs, marketing opt-in (low urgency is promotional)."""
    prefs = given.user.preferences  # type: ignore[union-attr]
    entry = given.entry
    if entry.category not in MANDATORY_CATEGORIES:
        if entry.category in prefs.muted_categories:
            trace.add("preferences", Verdict.BLOCK, f"user muted the {entry.category} category")
            return False
        if entry.name in prefs.muted_types:
            trace.add("preferences", Verdict.BLOCK, f"user muted {entry.name} notifications")
            return False
    promotional = entry.category is Category.MARKETING or urgency is Urgency.LOW
    if promotional and not prefs.marketing_opt_in:
        trace.add("preferences", Verdict.BLOCK, "promotional: the user has not opted in to marketing")
        return False
    trace.add("preferences", Verdict.PASS, f"{entry.category} notifications allowed")
    return True


def _channel_opt_ins(given: RoutingInput, candidates: list[Channel], trace: _Trace) -> list[Channel]:
    """Step 2b: per-channel opt-ins, for every category and for this one (the preference matrix's
    cells; never for security and system); SMS marketing needs a recorded consent for the user's
    phone (TCPA)."""
    user = given.user
    assert user is not None
    kept = []
    for channel in candidates:
        category = given.entry.category
        if not user.preferences.channel_enabled(channel):
            trace.add("channel_opt_in", Verdict.BLOCK, "user turned this channel off", channel)
        elif category not in MANDATORY_CATEGORIES and user.preferences.channel_muted_for(category, channel):
            trace.add(
                "channel_opt_in", Verdict.BLOCK, f"user turned this channel off for {category}", channel
            )
        elif (
            channel is Channel.SMS
            and given.entry.category is Category.MARKETING
            and (reason := _sms_marketing_consent_missing(user))
        ):
            trace.add("channel_opt_in", Verdict.BLOCK, reason, channel)
        else:
            kept.append(channel)
    return kept


def _sms_marketing_consent_missing(user: UserProfile) -> str | None:
    """Why marketing SMS may not go to the user's phone, or None. A consent covers one number; no
    phone at all is step 3's to report."""
    consent = user.sms_marketing_consent
    if consent is None:
        return "marketing SMS without recorded consent"
    if user.phone and not consent.covers(user.phone, user.phone):
        return "marketing SMS: the recorded consent is for another phone number, not the user's current one"
    return None


def _suppression_and_contacts(given: RoutingInput, channels: list[Channel], trace: _Trace) -> list[Channel]:
    """Step 3: suppression (bounces, complaints, STOP, dead tokens) and missing contacts."""
    kept = []
    for channel in channels:
        reason = _unreachable_reason(given, channel)
        if reason:
            trace.add("suppression", Verdict.BLOCK, reason, channel)
        else:
            kept.append(channel)
    return kept


def _unreachable_reason(given: RoutingInput, channel: Channel) -> str | None:
    user = given.user
    assert user is not None
    match channel:
        case Channel.EMAIL:
            if not user.email:
                return "no email address"
            if email_address(user.email) in given.suppressed:
                return _suppressed(given, "email address", email_address(user.email), "bounce or complaint")
        case Channel.SMS:
            if not user.phone:
                return "no phone number"
            if sms_address(user.phone) in given.suppressed:
                return _suppressed(given, "phone number", sms_address(user.phone), "STOP or unreachable")
        case Channel.PUSH:
            if not user.devices:
                return "no registered device"
            if not _live_tokens(given):
                return "every device token is dead"
        case Channel.WEBHOOK:
            if user.webhook is None:
                return "no webhook endpoint"
        case Channel.REALTIME:
            return None
    return None


def _suppressed(given: RoutingInput, what: str, address: str, usually: str) -> str:
    note = given.suppression_notes.get(address)
    return f"{what} suppressed: {note}" if note else f"{what} suppressed ({usually})"


def _live_tokens(given: RoutingInput) -> tuple[str, ...]:
    user = given.user
    assert user is not None
    return tuple(sorted(t for t in user.devices if push_address(t) not in given.suppressed))


def _presence(given: RoutingInput, urgency: Urgency, channels: list[Channel], trace: _Trace) -> list[Channel]:
    """Step 4: an occupied private-user channel means online; realtime is only for the online."""
    if given.online:
        trace.add("presence", Verdict.PASS, "online: private-user channel occupied")
        return channels
    if Channel.REALTIME in channels:
        trace.add("presence", Verdict.SKIP, "offline: no in-app realtime", Channel.REALTIME)
    return [c for c in channels if c is not Channel.REALTIME]


def _quiet_hours(
    given: RoutingInput, urgency: Urgency, channels: list[Channel], trace: _Trace
) -> datetime | None:
    """Step 5: non-critical push and SMS wait for the end of quiet hours; email and in-app go now."""
    user = given.user
    assert user is not None
    end = quiet_hours_end(given.now, user.quiet_hours, user.zone)
    if end is None:
        if user.quiet_hours is not None:
            trace.add("quiet_hours", Verdict.PASS, f"outside quiet hours ({user.time_zone})")
        return None
    if urgency is Urgency.CRITICAL:
        trace.add("quiet_hours", Verdict.PASS, "critical: quiet hours ignored")
        return None
    for channel in channels:
        if channel in DEFERRABLE_IN_QUIET_HOURS:
            reason = f"deferred to {end.isoformat()} ({user.time_zone})"
            trace.add("quiet_hours", Verdict.DEFER, reason, channel)
    return end


def _rate_limits(
    given: RoutingInput, urgency: Urgency, channels: list[Channel], trace: _Trace
) -> list[Channel]:
    """Step 6: per-user, per-channel hourly limits; critical is exempt."""
    if urgency is Urgency.CRITICAL:
        trace.add("rate_limit", Verdict.PASS, "critical: exempt from rate limits")
        return channels
    kept = []
    for channel in channels:
        limit = given.rate_limits.get(channel)
        used = given.rate_usage.get(channel, 0)
        if limit is not None and used >= limit:
            trace.add("rate_limit", Verdict.BLOCK, f"{used}/{limit} this hour", channel)
        else:
            kept.append(channel)
    return kept


def _in_app_or_push(available: set[Channel]) -> Channel | None:
    """The first choice of high and medium: in-app when online (realtime survived presence), else push."""
    for channel in (Channel.REALTIME, Channel.PUSH):
        if channel in available:
            return channel
    return None


# High urgency without a chain of its own: push (in-app when online), then email.
DEFAULT_HIGH_CHAIN = (ChainStep(channel=Channel.PUSH), ChainStep(channel=Channel.EMAIL))


def _chain(given: RoutingInput, available: set[Channel], trace: _Trace) -> list[tuple[Channel, ChainStep]]:
    """The type's escalation chain (or the default) over the channels that survived: a push step is
    in-app when the person is online, and a step on a refused channel is left out."""
    kept: list[tuple[Channel, ChainStep]] = []
    for step in given.entry.escalation or DEFAULT_HIGH_CHAIN:
        channel = step.channel
        if channel is Channel.PUSH and Channel.REALTIME in available:
            channel = Channel.REALTIME  # online: the in-app message is the step
        if channel in available and channel not in (c for c, _ in kept):
            kept.append((channel, step))
        else:
            trace.add("escalation", Verdict.SKIP, f"{channel.value} step left out: not reachable", channel)
    return kept


def _wait_seconds(given: RoutingInput, following: ChainStep) -> int:
    """How long a step waits before `following` runs: its after_seconds, else the fallback delay
    (also the bound on waiting for a delivery before an only-if-undeliverable step)."""
    if following.after_seconds is not None and not following.only_if_undeliverable:
        return following.after_seconds
    return int(given.fallback_delay.total_seconds())


def _describe(plan: EscalationPlan) -> str:
    parts = [plan.steps[0].delivery.channel.value]
    for before, step in zip(plan.steps, plan.steps[1:], strict=False):
        if before.until == "delivered":
            parts.append(f"{step.delivery.channel.value} if that cannot be delivered")
        else:
            parts.append(f"{step.delivery.channel.value} if not acknowledged within {before.wait_seconds} s")
    return ", then ".join(parts)


def _plan(
    given: RoutingInput,
    base: dict,
    urgency: Urgency,
    available: list[Channel],
    quiet_end: datetime | None,
    trace: _Trace,
) -> Decision:
    """Step 7: the urgency table turns the channels that survived into a delivery plan."""
    user = given.user
    assert user is not None
    tokens = _live_tokens(given)

    def delivery(channel: Channel) -> PlannedDelivery:
        deferred = quiet_end if channel in DEFERRABLE_IN_QUIET_HOURS else None
        match channel:
            case Channel.EMAIL:
                return PlannedDelivery(channel=channel, to=user.email)
            case Channel.SMS:
                return PlannedDelivery(channel=channel, to=user.phone, not_before=deferred)
            case Channel.PUSH:
                return PlannedDelivery(channel=channel, device_tokens=tokens, not_before=deferred)
            case Channel.WEBHOOK:
                return PlannedDelivery(channel=channel, to=user.webhook.url if user.webhook else None)
            case _:
                return PlannedDelivery(channel=channel)

    has = set(available)
    deliveries: list[PlannedDelivery] = []
    escalation: EscalationPlan | None = None
    digest_due_at: datetime | None = None
    inbox = urgency is not Urgency.SYSTEM

    match urgency:
        case Urgency.CRITICAL | Urgency.LOW | Urgency.SYSTEM:
            deliveries = [delivery(c) for c in available]
            what = " + ".join(c.value for c in available) or "nothing reachable"
            trace.add("urgency_table", Verdict.PLAN, f"{urgency}: {what} at once")
        case Urgency.HIGH:
            steps = _chain(given, has, trace)
            if len(steps) >= 2:
                first = delivery(steps[0][0])
                escalation = EscalationPlan(
                    steps=tuple(
                        EscalationStep(
                            delivery=first if i == 0 else delivery(channel),
                            wait_seconds=_wait_seconds(given, steps[i + 1][1])
                            if i + 1 < len(steps)
                            else None,
                            until="delivered"
                            if i + 1 < len(steps) and steps[i + 1][1].only_if_undeliverable
                            else "acknowledged",
                        )
                        for i, (channel, _) in enumerate(steps)
                    ),
                    deliver_at=first.not_before or given.now,
                )
                trace.add("urgency_table", Verdict.PLAN, f"high: {_describe(escalation)}")
            elif steps:
                deliveries = [delivery(steps[0][0])]
                trace.add("urgency_table", Verdict.PLAN, f"high: {steps[0][0].value}, nothing to escalate to")
            else:
                trace.add("urgency_table", Verdict.PLAN, "high: nothing reachable, inbox only")
        case Urgency.MEDIUM:
            primary = _in_app_or_push(has)
            if primary:
                deliveries = [delivery(primary)]
                if Channel.EMAIL in has:
                    digest_due_at = given.now + given.digest_delay
                what = primary.value + (
                    f", email digest if unread by {digest_due_at.isoformat()}" if digest_due_at else ""
                )
            elif Channel.EMAIL in has:
                # offline with no live device (or push off): the seeds' "push if the app is
                # installed, else email" — the email goes now, and no digest repeats it
                deliveries = [delivery(Channel.EMAIL)]
                what = "no push or in-app reachable, email now"
            else:
                what = "inbox only"
            trace.add("urgency_table", Verdict.PLAN, f"medium: {what}")
    return Decision(
        **base,
        trace=tuple(trace.steps),
        deliveries=tuple(deliveries),
        escalation=escalation,
        digest_due_at=digest_due_at,
        inbox=inbox,
    )
