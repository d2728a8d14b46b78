"""`/v1/me/notifications`: the caller's inbox (herald.inbox does the work) and acknowledgements
(herald.acknowledgement: ack, and read, end the notification's escalation)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler.openapi.params import Path, Query
from aws_lambda_powertools.event_handler.router import APIGatewayHttpRouter
from pydantic import BaseModel, ConfigDict, Field

from herald.acknowledgement import Acknowledgements, Via
from herald.api.auth import caller_id
from herald.api.errors import ApiError, NotFound
from herald.api.services import services
from herald.inbox import MAX_LIMIT, Archived, BadCursor, Inbox, InboxEntry, Mark
from herald.models import Category, Channel, Urgency
from herald.rendering import TemplateRenderError, TemplateSourceError, default_renderer
from herald.stores.users import PersonErased

logger = Logger(child=True)
router = APIGatewayHttpRouter()

# The in-app render of an item: the type's in-app templates, else its push, else its email text.
_RENDER_CHANNELS = (Channel.REALTIME, Channel.PUSH, Channel.EMAIL)


class InAppRender(BaseModel):
    title: str | None = None
    body: str | None = None


class InboxItem(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(description="the notification id (`ntf-…`)")
    type: str
    category: Category
    urgency: Urgency
    render: InAppRender | None = Field(description="the in-app title and body, in the notification's locale")
    data: dict[str, Any] = Field(description="the producer's data, for deep links")
    created_at: datetime
    seen_at: datetime | None
    read_at: datetime | None
    archived_at: datetime | None
    acked_at: datetime | None = Field(
        description="when the person acknowledged it (`ack`, or reading it): its escalation stops there"
    )


class InboxPage(BaseModel):
    items: list[InboxItem]
    next_cursor: str | None = Field(description="pass as `cursor` for the next page; null at the end")


class InboxCounts(BaseModel):
    unread: int
    unseen: int


class ReadAll(BaseModel):
    read_all_at: datetime = Field(description="everything created up to this instant is read")


def _inbox() -> Inbox:
    found = services(router)
    return Inbox(found.dynamodb, found.tables.notifications, found.tables.users)


def _acknowledgements() -> Acknowledgements:
    found = services(router)
    return Acknowledgements(
        found.dynamodb, found.tables.notifications, found.tables.users, found.stepfunctions
    )


def _render(entry: InboxEntry) -> InAppRender | None:
    """What the realtime message showed, else a render of the type's templates now."""
    record = entry.record
    if record.in_app:
        return InAppRender(title=record.in_app.get("title"), body=record.in_app.get("body"))
    renderer = default_renderer()
    for channel in _RENDER_CHANNELS:
        try:
            rendered = renderer.render(record.type, channel, record.locale, record.data)
        except (TemplateRenderError, LookupError):
            continue
        except TemplateSourceError:
            logger.warning("templates unreadable: inbox item without its render", extra={"type": record.type})
            return None
        if channel is Channel.EMAIL:
            return InAppRender(title=rendered.subject, body=rendered.text)
        return InAppRender(title=rendered.title, body=rendered.body)
    return None


def _item(entry: InboxEntry) -> InboxItem:
    record = entry.record
    return InboxItem(
        id=record.notification_id,
        type=record.type,
        category=record.category,
        urgency=record.urgency,
        render=_render(entry),
        data=record.data,
        created_at=record.created_at,
        seen_at=entry.seen_at,
        read_at=entry.read_at,
        archived_at=record.archived_at,
        acked_at=record.acked_at,
    )


@router.get("/me/notifications", summary="The caller's notifications, newest first")
def list_notifications(
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT, description="items per page")] = 20,
    cursor: Annotated[
        str | None, Query(max_length=512, description="`next_cursor` of the previous page")
    ] = None,
    unread: Annotated[bool, Query(description="only unread notifications")] = False,
    archived: Annotated[
        Archived, Query(description="exclude (default), include or only archived")
    ] = Archived.EXCLUDE,
) -> InboxPage:
    user_id = caller_id(router)
    try:
        entries, next_cursor = _inbox().page(
            user_id, limit=limit, cursor=cursor, unread=unread, archived=archived
        )
    except BadCursor as error:
        raise ApiError(
            str(error), [{"loc": ["query", "cursor"], "type": "invalid_cursor", "msg": str(error)}]
        ) from None
    return InboxPage(items=[_item(e) for e in entries], next_cursor=next_cursor)


@router.get("/me/notifications/count", summary="Unread and unseen counts (archived excluded)")
def count_notifications() -> InboxCounts:
    counts = _inbox().counts(caller_id(router))
    return InboxCounts(unread=counts.unread, unseen=counts.unseen)


@router.post("/me/notifications/read-all", summary="Mark every notification read (and seen)")
def read_all() -> ReadAll:
    try:
        at = _inbox().read_all(caller_id(router))
    except PersonErased:
        raise NotFound("no such person: erased") from None
    return ReadAll(read_all_at=datetime.fromisoformat(at))


def _mark(notification_id: str, mark: Mark) -> InboxItem:
    marked = _inbox().mark(caller_id(router), notification_id, mark)
    if marked is None:
        raise NotFound("no such notification")
    return _item(marked.entry)


def _acknowledge(notification_id: str, via: Via) -> InboxItem:
    acknowledged = _acknowledgements().acknowledge(caller_id(router), notification_id, via=via)
    if acknowledged is None:
        raise NotFound("no such notification")
    return _item(acknowledged.entry)


NotificationId = Annotated[str, Path(max_length=64, description="a notification id (`ntf-…`)")]


@router.post(
    "/me/notifications/<notification_id>/read",
    summary="Mark read (and seen); reading acknowledges it too (see `ack`); idempotent",
)
def mark_read(notification_id: NotificationId) -> InboxItem:
    return _acknowledge(notification_id, Via.READ)


@router.post("/me/notifications/<notification_id>/seen", summary="Mark seen; idempotent")
def mark_seen(notification_id: NotificationId) -> InboxItem:
    return _mark(notification_id, Mark.SEEN)


@router.post("/me/notifications/<notification_id>/archive", summary="Archive; idempotent")
def archive(notification_id: NotificationId) -> InboxItem:
    return _mark(notification_id, Mark.ARCHIVE)


@router.post(
    "/me/notifications/<notification_id>/ack",
    summary="Acknowledge (and mark seen): the notification's escalation ends, no further channel is "
    "used; idempotent, and harmless after the escalation moved on",
)
def acknowledge(notification_id: NotificationId) -> InboxItem:
    return _acknowledge(notification_id, Via.ACK)
