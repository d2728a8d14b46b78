"""Messages between Herald's functions: channel queue bodies and the escalation input."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_serializer

from herald.models import Category, Channel, Urgency


class ChannelMessage(BaseModel):
    """What a channel sender receives: enough to render and deliver without re-routing."""

    model_config = ConfigDict(extra="forbid")

    notification_id: str
    event_id: str
    user_id: str
    type: str
    channel: Channel
    urgency: Urgency
    category: Category
    locale: str
    data: dict[str, Any] = Field(default_factory=dict)
    to: str | None = Field(default=None, description="email address, E.164 phone or webhook URL")
    device_tokens: list[str] = Field(default_factory=list, description="push only")
    not_before: AwareDatetime | None = None
    task_token: str | None = Field(default=None, description="set by the escalation state machine")
    escalation: bool = Field(default=False, description="the primary step of an escalation")

    def queue_body(self) -> str:
        return self.model_dump_json(exclude_none=True)


class EscalationInput(BaseModel):
    """Input of one execution of the escalation state machine (named after the notification).

    The fallback always goes to the email queue (a definition substitution of the state machine).
    """

    model_config = ConfigDict(extra="forbid")

    notification_id: str
    user_id: str
    deliver_at: datetime
    fallback_delay_seconds: int = Field(ge=1, le=86400)
    primary_queue_url: str
    primary: ChannelMessage
    fallback: ChannelMessage

    @field_serializer("deliver_at")
    def _rfc3339_seconds(self, deliver_at: datetime) -> str:
        """The Wait state's TimestampPath wants RFC 3339 with `Z`; whole seconds are the safe subset."""
        return deliver_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

    def execution_input(self) -> str:
        return self.model_dump_json(exclude_none=True)


def parse_channel_body(body: str | bytes | dict[str, Any]) -> ChannelMessage:
    """A channel queue body: a bare ChannelMessage, or the escalation task's envelope
    `{"message": ChannelMessage, "task_token": "..."}`."""
    raw = json.loads(body) if isinstance(body, str | bytes) else body
    if isinstance(raw, dict) and "task_token" in raw and "message" in raw:
        return ChannelMessage.model_validate({**raw["message"], "task_token": raw["task_token"]})
    return ChannelMessage.model_validate(raw)
