"""`/v1/admin/...` reads of the operator console (decision 038): a person's recent notifications,
one notification's decision trace and delivery log, who is online, the suppression list and its
lift. Every route needs the admin scope (`AdminScope`; API Gateway answers 403 without it, and
`operator_id` checks it again).

The same stores and the same `herald.timeline` / `herald.suppression_admin` functions as the
`herald` CLI: the console and `herald trace` can never tell two stories.
"""

from __future__ import annotations

import base64
import binascii
import json
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler.openapi.params import Path, Query
from aws_lambda_powertools.event_handler.router import APIGatewayHttpRouter
from pydantic import BaseModel, Field

from herald import suppression_admin
from herald.api.auth import operator_id
from herald.api.errors import Conflict, ErrorResponse, NotFound, Unprocessable
from herald.api.services import OperatorServices, operator_services
from herald.models import Channel
from herald.stores.notifications import NotificationRecord, NotificationStore, stamp
from herald.stores.presence import PresenceStore
from herald.stores.suppression import ConsentRequired, SuppressionChanged, SuppressionStore
from herald.timeline import channel_outcomes, find_notification

router = APIGatewayHttpRouter()
logger = Logger(child=True)

MAX_RECENT = 200  # `herald user --limit`'s bound
MAX_PAGE = 500  # a listing's page: far below a synchronous answer's 6 MB
SuppressedChannel = Literal["email", "sms", "push"]  # the channels with a suppression list


def _cursor(kind: str, key: str | None) -> str | None:
    if key is None:
        return None
    raw = json.dumps([kind, key], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _after(kind: str, cursor: str | None) -> str | None:
    """The key a cursor of this listing goes on after; 422 for anything else."""
    if cursor is None:
        return None
    try:
        found_kind, key = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (ValueError, TypeError, binascii.Error):
        found_kind, key = None, None
    if found_kind != kind or not isinstance(key, str) or not key:
        message = "the cursor is not one this listing handed out"
        raise Unprocessable(message, [{"loc": ["query", "cursor"], "type": "cursor", "msg": message}])
    return key


class ChannelOutcomeView(BaseModel):
    channel: str
    state: str = Field(description="sent, delivered, bounced, …; queued, suppressed, skipped, waiting")
    reason: str = ""
    provider: str = ""
    provider_message_id: str = ""


class NotificationSummary(BaseModel):
    notification_id: str
    event_id: str
    user_id: str
    type: str
    urgency: str
    category: str
    status: str
    created_at: str
    read_at: str | None = None
    acked_at: str | None = None
    channels: list[ChannelOutcomeView] = Field(description="one outcome per channel, as `herald user`")


class DecisionStep(BaseModel):
    rule: str
    verdict: str
    channel: str | None = None
    reason: str = ""


class LogEntry(BaseModel):
    at: str
    channel: str
    outcome: str
    provider: str | None = None
    code: str | None = None
    provider_message_id: str | None = None
    detail: str | None = None


class NotificationTrace(NotificationSummary):
    locale: str
    seen_at: str | None = None
    archived_at: str | None = None
    decision: list[DecisionStep] = Field(description="the router's trace, rule by rule")
    delivery_log: list[LogEntry] = Field(description="every channel's transitions, in time order")


class RecentNotifications(BaseModel):
    user_id: str
    notifications: list[NotificationSummary] = Field(description="newest first")


class OnlinePerson(BaseModel):
    user_id: str
    confirmed_at: str = Field(description="the Pusher occupancy webhook that last said so")


class Online(BaseModel):
    checked_at: str
    max_age_seconds: int = Field(description="an older confirmation does not count as online")
    people: list[OnlinePerson] = Field(description="one page, in the table's order")
    next_cursor: str | None = Field(default=None, description="more people: ask again with it")


class SuppressionEntry(BaseModel):
    address: str = Field(description="the entry's key: name it to lift the entry")
    channel: str
    contact: str | None = Field(description="the plain contact; none for device tokens and erased people")
    reason: str
    last_reason: str | None = None
    source: str
    created_at: str
    notification_id: str | None = None


class SuppressionList(BaseModel):
    entries: list[SuppressionEntry] = Field(description="one page (newest first within it)")
    next_cursor: str | None = Field(default=None, description="more entries: ask again with it")


class LiftRequest(BaseModel):
    contact: str = Field(
        min_length=1, max_length=512, description="an email, an E.164 phone, a token or a key"
    )
    channel: Channel | None = Field(default=None, description="default: from the contact")
    why: str = Field(min_length=3, max_length=500, description="recorded with who lifted it")
    force: bool = Field(default=False, description="lift the person's own opt-out (STOP) too")


class LiftedEntry(BaseModel):
    address: str
    was: str = Field(description="the entry's reason")
    source: str
    since: str
    lifted_by: str
    why: str


class OwnOptOut(Conflict):
    """The person's own opt-out (an SMS STOP): lifted only with `force`."""

    code = "consent_required"


def _operator() -> tuple[OperatorServices, str]:
    found = operator_services(router)
    return found, operator_id(router, found.settings.admin_scope)


def _summary_fields(record: NotificationRecord) -> dict[str, Any]:
    def at(value: datetime | None) -> str | None:
        return None if value is None else stamp(value)

    return {
        "notification_id": record.notification_id,
        "event_id": record.event_id,
        "user_id": record.user_id,
        "type": record.type,
        "urgency": record.urgency.value,
        "category": record.category.value,
        "status": record.status,
        "created_at": stamp(record.created_at),
        "read_at": at(record.read_at),
        "acked_at": at(record.acked_at),
        "channels": [ChannelOutcomeView(**vars(outcome)) for outcome in channel_outcomes(record)],
    }


def _log_entry(entry: dict[str, Any]) -> LogEntry:
    optional = ("provider", "code", "provider_message_id", "detail")
    return LogEntry(
        at=str(entry.get("at", "")),
        channel=str(entry.get("channel", "?")),
        outcome=str(entry.get("outcome", "?")),
        **{k: str(entry[k]) for k in optional if entry.get(k) not in (None, "")},
    )


@router.get(
    "/admin/users/<user_id>/notifications",
    summary="A person's recent notifications and each channel's outcome (admin scope; `herald user`)",
)
def recent_notifications(
    user_id: Annotated[str, Path(min_length=1, max_length=128)],
    limit: Annotated[int, Query(ge=1, le=MAX_RECENT, description="how many, newest first")] = 20,
) -> RecentNotifications:
    found, _ = _operator()
    records = NotificationStore(found.dynamodb, found.tables.notifications).recent(user_id, limit)
    return RecentNotifications(
        user_id=user_id, notifications=[NotificationSummary(**_summary_fields(r)) for r in records]
    )


@router.get(
    "/admin/notifications/<identifier>",
    summary="One notification's decision trace, channel outcomes and delivery log (admin scope; "
    "`herald trace`)",
    responses={
        200: {
            "description": "The notification as `herald trace` shows it",
            "content": {"application/json": {"model": NotificationTrace}},
        },
        404: {
            "description": "No such notification",
            "content": {"application/json": {"model": ErrorResponse}},
        },
    },
)
def notification_trace(
    identifier: Annotated[
        str, Path(min_length=1, max_length=256, description="a notification id or event id")
    ],
    user_id: Annotated[
        str | None, Query(max_length=128, description="the member, for an audience's event id")
    ] = None,
) -> NotificationTrace:
    found, _ = _operator()
    store = NotificationStore(found.dynamodb, found.tables.notifications)
    record = find_notification(store, identifier, user_id)
    if record is None:
        hint = "" if user_id else " (an audience's event needs user_id)"
        raise NotFound(f"no notification {identifier!r}{hint}: never routed, expired or erased")
    return NotificationTrace(
        **_summary_fields(record),
        locale=record.locale,
        seen_at=None if record.seen_at is None else stamp(record.seen_at),
        archived_at=None if record.archived_at is None else stamp(record.archived_at),
        decision=[
            DecisionStep(
                rule=str(step.get("rule", "?")),
                verdict=str(step.get("verdict", "?")),
                channel=step.get("channel"),
                reason=str(step.get("reason", "")),
            )
            for step in record.decision
        ],
        delivery_log=[_log_entry(entry) for entry in record.delivery_log],
    )


@router.get(
    "/admin/presence", summary="Who is online now, as routing sees it (admin scope), a page at a time"
)
def online(
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE, description="people per page")] = 100,
    cursor: Annotated[
        str | None, Query(max_length=512, description="`next_cursor` of the previous page")
    ] = None,
) -> Online:
    found, _ = _operator()
    now = datetime.now(UTC)
    max_age = found.settings.presence_max_age_seconds
    store = PresenceStore(found.dynamodb, found.tables.presence)
    people, after = store.online_page(now, max_age, limit=limit, after=_after("presence", cursor))
    return Online(
        checked_at=stamp(now),
        max_age_seconds=max_age,
        people=[
            OnlinePerson(user_id=p.user_id, confirmed_at=stamp(datetime.fromtimestamp(p.time_ms / 1000, UTC)))
            for p in sorted(people, key=lambda p: (p.time_ms, p.user_id))
        ],
        next_cursor=_cursor("presence", after),
    )


def _entry(entry: dict[str, Any]) -> SuppressionEntry:
    return SuppressionEntry(
        address=str(entry["address"]),
        channel=str(entry["address"]).split("#", 1)[0],
        contact=entry.get("contact"),
        reason=str(entry.get("reason", "?")),
        last_reason=entry.get("last_reason"),
        source=str(entry.get("source", "?")),
        created_at=str(entry.get("created_at", "")),
        notification_id=entry.get("notification_id"),
    )


@router.get(
    "/admin/suppressions",
    summary="The suppression list across channels, a page at a time, or one contact's entry (admin scope)",
)
def suppression_list(
    channel: Annotated[SuppressedChannel | None, Query(description="only this channel's entries")] = None,
    contact: Annotated[
        str | None,
        Query(
            min_length=1,
            max_length=512,
            description="only this contact's entry (an email, an E.164 phone, a token or a key)",
        ),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE, description="entries per page")] = 100,
    cursor: Annotated[
        str | None, Query(max_length=1024, description="`next_cursor` of the previous page")
    ] = None,
) -> SuppressionList:
    found, _ = _operator()
    store = SuppressionStore(found.dynamodb, found.tables.suppression)
    if contact is not None:  # one read: what support is asked about
        try:
            address, _ = suppression_admin.address_of(contact, Channel(channel) if channel else None)
        except suppression_admin.NotAContact as error:
            detail = [{"loc": ["query", "contact"], "type": "contact", "msg": str(error)}]
            raise Unprocessable(str(error), detail) from None
        entry = store.entry(address)
        return SuppressionList(entries=[_entry(entry)] if entry else [])
    entries, after = store.page(
        f"{channel}#" if channel else "", limit=limit, after=_after("suppressions", cursor)
    )
    return SuppressionList(
        entries=sorted((_entry(e) for e in entries), key=lambda e: e.created_at, reverse=True),
        next_cursor=_cursor("suppressions", after),
    )


@router.post(
    "/admin/suppressions/lift",
    summary="Lift a suppression entry: Herald may use the contact again (admin scope; recorded)",
    responses={
        200: {
            "description": "Lifted; recorded with who lifted it and why",
            "content": {"application/json": {"model": LiftedEntry}},
        },
        404: {"description": "Not suppressed", "content": {"application/json": {"model": ErrorResponse}}},
        409: {
            "description": "The person's own opt-out (needs `force`), or the entry changed meanwhile",
            "content": {"application/json": {"model": ErrorResponse}},
        },
    },
)
def lift_suppression(lift: LiftRequest) -> LiftedEntry:
    found, operator = _operator()
    try:
        address, _ = suppression_admin.address_of(lift.contact, lift.channel)
    except suppression_admin.NotAContact as error:
        raise Unprocessable(
            str(error), [{"loc": ["body", "contact"], "type": "contact", "msg": str(error)}]
        ) from None
    store = SuppressionStore(found.dynamodb, found.tables.suppression)
    try:
        lifted = suppression_admin.lift(
            store,
            address,
            counters_table=found.tables.rate_counters,
            by=operator,
            why=lift.why,
            force=lift.force,
        )
    except ConsentRequired:
        raise OwnOptOut(
            "this is the person's own opt-out (STOP): they opt back in by replying START; lift it "
            "for them only with force"
        ) from None
    except SuppressionChanged:
        raise Conflict(
            "the entry changed while being lifted (reported again, or lifted by someone else): reload and "
            "decide again"
        ) from None
    if lifted is None:
        raise NotFound("not suppressed")
    logger.info("suppression lifted", extra={"address": address, "by": operator})
    entry = lifted.entry
    return LiftedEntry(
        address=address,
        was=str(entry.get("reason", "?")),
        source=str(entry.get("source", "?")),
        since=str(entry.get("created_at", "")),
        lifted_by=operator,
        why=lift.why,
    )
