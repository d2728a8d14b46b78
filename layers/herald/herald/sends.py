"""Manual sends: an administrator's (`POST /v1/admin/notifications`) or an operator's (`herald send`)
notification, put on the Herald bus as the `NotificationRequested` a producer would put, so it takes
the one path every notification takes (router, idempotency, preferences, channels).

It is checked against the catalog first (the type exists, its data has the required fields, the
urgency override is allowed), so a typo is refused to its author instead of landing in the DLQ.
The event id is `manual-<the caller's id>` when one is given (a retried request is then delivered
once; the prefix keeps it apart from every producer's ids, which the router deduplicates on), else
`manual-<uuid>`.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from herald.catalog import Catalog, UnknownNotificationType
from herald.models import DETAIL_TYPE, EVENT_ID_MAX_LENGTH, Audience, NotificationRequest, Urgency

SOURCE = "herald.manual"


MANUAL_PREFIX = "manual-"  # a manual send's event id: never a producer's


class SendRefused(ValueError):
    """The request does not fit the catalog (unknown type, missing data, urgency not allowed)."""


class ManualSend(BaseModel):
    """What an administrator asks for: one person or an audience, a type and its data."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: str = Field(min_length=1, max_length=64, pattern=r"^[a-z][a-z0-9_]*$")
    user_id: str | None = Field(default=None, min_length=1, max_length=128)
    audience: Audience | None = None
    data: dict[str, Any] = Field(default_factory=dict)
    urgency: Urgency | None = None
    locale: str | None = Field(default=None, pattern=r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})*$")
    send_at: AwareDatetime | None = None
    event_id: str | None = Field(
        default=None,
        min_length=1,
        max_length=EVENT_ID_MAX_LENGTH - len(MANUAL_PREFIX),  # sent with the prefix
        pattern=r"^[A-Za-z0-9_.:-]+$",
        description="yours, to make a retried request deliver once (sent as manual-<event_id>); "
        "default: a fresh manual-<uuid>",
    )

    @model_validator(mode="after")
    def _one_recipient_spec(self) -> ManualSend:
        if (self.user_id is None) == (self.audience is None):
            raise ValueError("exactly one of 'user_id' and 'audience' is required")
        return self

    def request(self, catalog: Catalog) -> NotificationRequest:
        """The bus event's detail, or SendRefused saying what the catalog objects to."""
        try:
            entry = catalog.entry(self.type)
        except UnknownNotificationType as error:
            raise SendRefused(str(error)) from None
        missing = entry.missing_data(self.data)
        if missing:
            raise SendRefused(f"{self.type} requires data fields {missing}")
        problem = entry.urgency_problem(self.urgency) if self.urgency else None
        if problem:
            raise SendRefused(problem)
        fields = self.model_dump(exclude_none=True, exclude={"event_id"})
        return NotificationRequest.model_validate(
            {**fields, "event_id": f"{MANUAL_PREFIX}{self.event_id or uuid.uuid4().hex}"}
        )


class BusRefused(RuntimeError):
    """PutEvents answered, but did not take the event."""


def publish(events: Any, bus_name: str, request: NotificationRequest) -> str:
    """Put the request on the bus (PutEvents, source `herald.manual`); returns its event id."""
    response = events.put_events(
        Entries=[
            {
                "EventBusName": bus_name,
                "Source": SOURCE,
                "DetailType": DETAIL_TYPE,
                "Detail": request.model_dump_json(exclude_none=True),
            }
        ]
    )
    if response.get("FailedEntryCount"):
        failure = (response.get("Entries") or [{}])[0]
        why = f"{failure.get('ErrorCode')} {failure.get('ErrorMessage')}"
        raise BusRefused(f"the bus refused the event: {why}")
    return request.event_id


def describe(request: NotificationRequest) -> str:
    """`order_shipped to user 42`, `maintenance to role admin at 2026-12-01T09:00:00+00:00`."""
    if request.user_id:
        who = f"user {request.user_id}"
    else:
        who = request.audience.describe() if request.audience else "nobody"
    when = f" at {request.send_at.isoformat()}" if isinstance(request.send_at, datetime) else ""
    return f"{request.type} to {who}{when}"
