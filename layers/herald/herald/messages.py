"""Messages between Herald's functions: channel queue bodies and the escalation input.

Compatibility rule (docs/contracts.md, decision 008). During a rolling deploy the previous
release's functions read what the new release writes, and the other way round; a message may also
wait days in a queue, a DLQ or a schedule. So every internal body:

1. is read tolerantly: a field the reader does not know is ignored, never an error (adding an
   optional field is always safe and needs no new version);
2. carries `v`, its schema version (absent = 1). A writer raises `v` only for a change an older
   reader cannot fully understand, and a newer version stays a superset of the one before it:
   every field the previous version had keeps its name and meaning for at least one release;
3. read with a `v` newer than the reader knows is processed with what the reader understands
   (rule 2 makes that safe), never dropped; the reader logs a `newer message version` warning
   so a skewed deploy is visible. A body that does not validate at all goes to the DLQ with the
   reason, and `herald redrive` brings it back once the deploy is complete.

Sensitive data. A channel message is a *reference* by default: `data`, the recipient's address
and the device tokens stay on the notification record, which the router writes before it queues
anything, and the sender reads them with its claim (the claim's UpdateItem returns the record, no
extra call). So SQS bodies, the escalation's execution history and Scheduler inputs never hold
the notification's data (the catalog's sensitive fields included). A message that carries `data`
(written by an earlier release, or by another producer) is used as it is.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from aws_lambda_powertools import Logger
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from herald.models import Category, Channel, Urgency

logger = Logger(child=True)

# The newest schema version this code writes and fully understands (rule 2 above).
MESSAGE_VERSION = 1


class InternalMessage(BaseModel):
    """A body one Herald function sends another: tolerant of unknown fields, versioned."""

    model_config = ConfigDict(extra="ignore")

    v: int = Field(default=MESSAGE_VERSION, ge=1, description="schema version (absent in old bodies = 1)")

    @property
    def newer_than_known(self) -> bool:
        return self.v > MESSAGE_VERSION


class UnresolvedReference(LookupError):
    """A reference message whose notification record (or its data) is missing: never sent empty."""


class ChannelMessage(InternalMessage):
    """What a channel sender receives: the notification's identity and routing, not its content.

    `data` absent (None) makes it a reference: the sender fills `data`, `to` and `device_tokens`
    from the notification record (`hydrated`) before it renders anything."""

    notification_id: str
    event_id: str
    user_id: str
    type: str
    channel: Channel
    urgency: Urgency
    category: Category
    locale: str
    data: dict[str, Any] | None = Field(
        default=None, description="absent: a reference, read from the notification record"
    )
    to: str | None = Field(default=None, description="email address, E.164 phone or webhook URL")
    device_tokens: list[str] = Field(default_factory=list, description="push only")
    not_before: AwareDatetime | None = None
    task_token: str | None = Field(default=None, description="set by the escalation state machine")
    escalation: bool = Field(
        default=False, description="a waiting step of an escalation (the state machine adds its task token)"
    )
    after_escalation: bool = Field(
        default=False,
        description="a later step of an escalation chain: not sent once the notification is acknowledged",
    )
    ends_when_delivered: bool = Field(
        default=False,
        description="an escalation step whose delivery ends the chain: the next step runs only if it "
        "cannot be delivered",
    )

    @property
    def stops_when_acknowledged(self) -> bool:
        """A step of an escalation (waiting for its token, or sent after one): an acknowledgement
        that reached the record first means it is not sent (herald.delivery's claim)."""
        return bool(self.task_token) or self.after_escalation

    @property
    def is_reference(self) -> bool:
        return self.data is None

    def queue_body(self) -> str:
        return self.model_dump_json(exclude_none=True)

    def hydrated(self, record: Mapping[str, Any] | None) -> ChannelMessage:
        """This message with the notification record's `data` and its planned address / tokens.

        Raises UnresolvedReference when the record or its `data` is missing (the router always
        writes both before it dispatches, so that is never a message to send with empty data)."""
        if not self.is_reference:
            return self
        if record is None:
            raise UnresolvedReference(f"notification record {self.notification_id} not found")
        data = record.get("data")
        if not isinstance(data, dict):
            raise UnresolvedReference(f"notification record {self.notification_id} has no data")
        planned = planned_delivery(record.get("plan") or [], self.channel, primary=self.escalation)
        tokens = planned.get("device_tokens") or []
        return self.model_copy(
            update={
                "data": data,
                "to": self.to or planned.get("to"),
                "device_tokens": self.device_tokens or [str(t) for t in tokens],
            }
        )


def planned_delivery(plan: list[Any], channel: Channel, *, primary: bool) -> Mapping[str, Any]:
    """The router's planned delivery for `channel` on a record's `plan` (`{}` when none).

    `plan` holds the direct deliveries and, for an escalation, `{"escalation": {"steps": [...]}}`
    (or, decided before chains, `{primary, fallback}`); an escalation step (`primary=True`) is looked
    up in the chain first."""
    entries = [p for p in plan if isinstance(p, dict)]
    direct = [p for p in entries if "escalation" not in p and p.get("channel") == channel]
    escalation = next((p["escalation"] for p in entries if isinstance(p.get("escalation"), dict)), {})
    if isinstance(escalation.get("steps"), list):
        chain = [s.get("delivery") for s in escalation["steps"] if isinstance(s, dict)]
    else:
        chain = [escalation.get("primary"), escalation.get("fallback")]
    ordered = [*chain, *direct] if primary else [*direct, *chain]
    return next((s for s in ordered if isinstance(s, dict) and s.get("channel") == channel), {})


class EscalationStepInput(InternalMessage):
    """One step of an execution: the reference message for its channel's queue, and how long the
    state machine waits on it before the next step (absent on the last step)."""

    queue_url: str
    message: ChannelMessage
    wait_seconds: int | None = Field(default=None, ge=1, le=86400)


class EscalationInput(InternalMessage):
    """Input of one execution of the escalation state machine, named after the notification and
    started when the person may be disturbed (EventBridge Scheduler starts a deferred one).

    `first` waits `wait_seconds` for its task token, then `last` goes (statemachine/escalation.asl.json;
    named fields, not a list: a `$.steps[0]` path is a scalar on AWS but a list on moto's
    interpreter). Every step is a reference message: the execution history holds ids, never
    notification data."""

    notification_id: str
    user_id: str
    first: EscalationStepInput
    last: EscalationStepInput

    @model_validator(mode="after")
    def _waits(self) -> EscalationInput:
        if self.first.wait_seconds is None:
            raise ValueError("the first step needs wait_seconds")
        return self

    @property
    def steps(self) -> tuple[EscalationStepInput, ...]:
        return (self.first, self.last)

    def execution_input(self) -> str:
        return self.model_dump_json(exclude_none=True)


def parse_channel_body(body: str | bytes | dict[str, Any]) -> ChannelMessage:
    """A channel queue body: a bare ChannelMessage, or the escalation task's envelope
    `{"message": ChannelMessage, "task_token": "..."}`."""
    raw = json.loads(body) if isinstance(body, str | bytes) else body
    if isinstance(raw, dict) and "task_token" in raw and "message" in raw:
        message = ChannelMessage.model_validate({**raw["message"], "task_token": raw["task_token"]})
    else:
        message = ChannelMessage.model_validate(raw)
    if message.newer_than_known:
        logger.warning(
            "newer message version: processing the fields this release knows",
            extra={
                "notification_id": message.notification_id,
                "message_version": message.v,
                "known_version": MESSAGE_VERSION,
            },
        )
    return message
