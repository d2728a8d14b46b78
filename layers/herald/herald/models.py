"""The producer contract: what services put on the Herald bus."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

EVENT_ID_MAX_LENGTH = 128
DETAIL_TYPE = "NotificationRequested"


class Urgency(StrEnum):
    CRITICAL = "critical"
    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"
    SYSTEM = "system"


class Category(StrEnum):
    TRANSACTIONAL = "transactional"
    MARKETING = "marketing"
    SECURITY = "security"
    SYSTEM = "system"


# Categories a user cannot mute as a whole nor per channel: they must always be able to learn of
# account attacks, and system notifications go to integrations, not people. Channel opt-outs (every
# category's) still apply.
MANDATORY_CATEGORIES = frozenset({Category.SECURITY, Category.SYSTEM})


class Channel(StrEnum):
    EMAIL = "email"
    PUSH = "push"
    SMS = "sms"
    REALTIME = "realtime"
    WEBHOOK = "webhook"


AUDIENCE_NAME = r"^[A-Za-z0-9_.:-]+$"


class Audience(BaseModel):
    """Fan-out target, exactly one of: every person holding a `role` (the directory's), every person
    following a `topic` (their own choice, or the directory's), or `all` of them."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    role: str | None = Field(default=None, min_length=1, max_length=64, pattern=AUDIENCE_NAME)
    topic: str | None = Field(default=None, min_length=1, max_length=64, pattern=AUDIENCE_NAME)
    all: Literal[True] | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> Audience:
        if sum(value is not None for value in (self.role, self.topic, self.all)) != 1:
            raise ValueError("an audience is exactly one of 'role', 'topic' and 'all': true")
        return self

    def describe(self) -> str:
        if self.role is not None:
            return f"role {self.role}"
        return f"topic {self.topic}" if self.topic is not None else "everyone"


class NotificationRequest(BaseModel):
    """One `NotificationRequested` event's `detail`.

    Exactly one of `user_id` and `audience` names the recipients. `event_id` is the idempotency
    key: the same event id is delivered at most once per recipient (Herald keys fan-out members on
    `event_id` + user id).
    """

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        json_schema_extra={
            "examples": [
                {
                    "event_id": "ord-999-shipped",
                    "type": "order_shipped",
                    "user_id": "42",
                    "data": {"order_id": "999", "tracking_url": "https://example.com/t/999"},
                }
            ]
        },
    )

    event_id: str = Field(min_length=1, max_length=EVENT_ID_MAX_LENGTH, pattern=r"^[A-Za-z0-9_.:-]+$")
    type: str = Field(min_length=1, max_length=64, pattern=r"^[a-z][a-z0-9_]*$")
    user_id: str | None = Field(default=None, min_length=1, max_length=128)
    audience: Audience | None = None
    data: dict[str, Any] = Field(default_factory=dict)
    urgency: Urgency | None = None
    locale: str | None = Field(default=None, pattern=r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})*$")
    send_at: AwareDatetime | None = None

    @model_validator(mode="after")
    def _one_recipient_spec(self) -> NotificationRequest:
        if (self.user_id is None) == (self.audience is None):
            raise ValueError("exactly one of 'user_id' and 'audience' is required")
        return self

    def due_later(self, now: datetime) -> bool:
        return self.send_at is not None and self.send_at > now
