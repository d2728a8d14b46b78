"""What arrives on the ingest queue: the EventBridge envelope around a NotificationRequest."""

from __future__ import annotations

import json
from typing import Any, Literal

from aws_lambda_powertools.utilities.parser.models import EventBridgeModel, SqsRecordModel
from pydantic import BaseModel, ConfigDict, Field, Json

from herald.models import NotificationRequest


class HeraldControl(BaseModel):
    """Set only on envelopes Herald itself re-enqueues (EventBridge never lets a producer set it).

    An internal message: unknown fields are ignored and `v` is its schema version (the rule in
    `herald.messages`)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    v: int = Field(default=1, ge=1)
    phase: Literal["release"] | None = None
    fanout_cursor: str | None = None
    fanout_of: str | None = None
    held: str | None = Field(default=None, description="the request is held in DynamoDB under this name")


class IngestEnvelope(EventBridgeModel):
    """EventBridge's envelope. Herald reads only `detail` (and its own `herald`); the envelope's
    bookkeeping fields are optional so emulators that omit some (moto drops `account`) still work."""

    detail: NotificationRequest
    account: str | None = None  # type: ignore[assignment]
    region: str | None = None  # type: ignore[assignment]
    resources: list[str] = Field(default_factory=list)
    herald: HeraldControl | None = None

    @property
    def request(self) -> NotificationRequest:
        return self.detail

    @property
    def recipient_key(self) -> str:
        """`event_id` for a single recipient; `event_id#user_id` for a member of a fan-out."""
        if self.herald and self.herald.fanout_of:
            return f"{self.detail.event_id}#{self.detail.user_id}"
        return self.detail.event_id

    @property
    def idempotency_key(self) -> str:
        key = self.recipient_key
        if self.herald and self.herald.phase:
            key += f"@{self.herald.phase}"
        if self.herald and self.herald.fanout_cursor:
            key += f"@page:{self.herald.fanout_cursor}"
        return key

    def body(self) -> str:
        return self.model_dump_json(by_alias=True, exclude_none=True)


class IngestRecord(SqsRecordModel):
    body: Json[IngestEnvelope]  # type: ignore[assignment]


def peek_event_id(raw_body: str | None) -> str | None:
    """The event id of a body that may not validate, for logging a rejected record."""
    try:
        detail = json.loads(raw_body or "").get("detail") or {}
        event_id = detail.get("event_id")
        return str(event_id) if event_id is not None else None
    except (ValueError, AttributeError):
        return None


def peek_envelope(raw_body: str | None) -> IngestEnvelope | None:
    try:
        return IngestEnvelope.model_validate_json(raw_body or "")
    except ValueError:
        return None


def encode_cursor(last_evaluated_key: dict[str, Any]) -> str:
    return json.dumps(last_evaluated_key, sort_keys=True, separators=(",", ":"))


def decode_cursor(cursor: str) -> dict[str, Any]:
    return json.loads(cursor)
