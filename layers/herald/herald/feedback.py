"""Provider feedback: what a provider reports after it accepted a message (issue 11).

SES (configuration-set events), SendGrid (signed event webhook), Twilio (signed status callbacks)
and FCM (dead tokens, at send time) each say what became of a message later: delivered, bounced,
complained, failed, deferred, opened. Each parser turns its provider's own shape into
`ProviderEvent`s; `FeedbackRecorder` applies them the same way whatever the provider:

- the notification's delivery log gets an entry for every event (support reads the whole story),
  and the channel's state moves when the news is final and newer (herald.delivery
  FEEDBACK_TRANSITIONS: `sent → delivered | bounced | complained | failed`, never backwards);
- what means "never again" suppresses the address (herald.stores.suppression, hashed keys that a
  changed or deleted profile cannot lift): a permanent bounce, a complaint (which also opts the
  person out of marketing), a phone the carrier reports unreachable for good. Each entry records
  the reason, the provider, the time and the notification that caused it.

Each provider's parser decides what to hand over: SES ignores mail Herald did not send (no Herald
tags, another configuration set; decision 022). An event without a notification writes no log; a
complaint opts a person out of marketing only when the notification it names was found, so an id
that does not resolve can never create or change anyone's settings.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from aws_lambda_powertools import Logger
from pydantic import AwareDatetime, BaseModel, ConfigDict

from herald.delivery import DeliveryLedger, DeliveryState, FeedbackWrite, LogEntry
from herald.models import Channel
from herald.stores.keys import email_address, sms_address
from herald.stores.suppression import SuppressionStore
from herald.stores.users import OwnChange, PersonErased, UserProfile, UserStore

logger = Logger(child=True)


class Feedback(StrEnum):
    DELIVERED = "delivered"  # the mailbox / handset has it
    BOUNCED = "bounced"  # permanent: the address does not exist or refuses mail
    SOFT_BOUNCED = "soft_bounced"  # transient (mailbox full, greylisted): counted, not final
    COMPLAINED = "complained"  # marked as spam / unwanted
    FAILED = "failed"  # permanently undeliverable after acceptance (carrier, rendering, rejected)
    UNREACHABLE = "unreachable"  # failed, and the address must not be tried again (a landline)
    DEFERRED = "deferred"  # delayed, still trying
    OPENED = "opened"  # engagement, for the log only


# The channel state each kind of news moves to (None: the log only).
_STATE = {
    Feedback.DELIVERED: DeliveryState.DELIVERED,
    Feedback.BOUNCED: DeliveryState.BOUNCED,
    Feedback.COMPLAINED: DeliveryState.COMPLAINED,
    Feedback.FAILED: DeliveryState.FAILED,
    Feedback.UNREACHABLE: DeliveryState.FAILED,
    Feedback.SOFT_BOUNCED: DeliveryState.FAILED,  # this message is given up; the address is not (yet)
    Feedback.DEFERRED: None,
    Feedback.OPENED: None,
}
# What suppresses the address it is about, and with which reason.
_SUPPRESSING = {
    Feedback.BOUNCED: "bounce",
    Feedback.COMPLAINED: "complaint",
    Feedback.UNREACHABLE: "unreachable",
}


class ProviderEvent(BaseModel):
    """One provider report, in Herald's terms."""

    model_config = ConfigDict(frozen=True)

    channel: Channel
    feedback: Feedback
    provider: str  # ses, sendgrid, twilio, fcm
    at: AwareDatetime
    user_id: str | None = None  # from Herald's tags on the message: absent when Herald did not send it
    notification_id: str | None = None
    contact: str | None = None  # the email address or phone number the report is about
    provider_message_id: str | None = None
    code: str | None = None  # the provider's own code (SMTP status, Twilio error code ...)
    detail: str | None = None
    # the provider's id of this report: a replay of it writes nothing on the record
    event_id: str | None = None

    @property
    def herald_sent(self) -> bool:
        return bool(self.user_id and self.notification_id)

    def suppression_address(self) -> str | None:
        """The hashed suppression key of `contact` on this channel (None without a contact)."""
        if not self.contact:
            return None
        if self.channel is Channel.EMAIL:
            return email_address(self.contact)
        if self.channel is Channel.SMS:
            return sms_address(self.contact)
        return None


@dataclass
class FeedbackReport:
    logged: int = 0  # delivery-log entries written
    moved: int = 0  # channel states changed
    suppressed: int = 0
    opted_out_of_marketing: int = 0
    unknown: int = 0  # events for no notification Herald keeps (not sent by Herald, or erased)
    duplicates: int = 0  # events applied before (replays): nothing written on the record
    counts: dict[str, int] = field(default_factory=dict)

    def count(self, event: ProviderEvent) -> None:
        self.counts[event.feedback.value] = self.counts.get(event.feedback.value, 0) + 1


class FeedbackRecorder:
    def __init__(self, ledger: DeliveryLedger, suppression: SuppressionStore, users: UserStore) -> None:
        self._ledger = ledger
        self._suppression = suppression
        self._users = users

    def apply(self, events: Iterable[ProviderEvent]) -> FeedbackReport:
        report = FeedbackReport()
        for event in events:
            self._apply(event, report)
        return report

    def suppress(self, event: ProviderEvent, reason: str) -> bool:
        """Suppress the address `event` is about (False when it names none)."""
        address = event.suppression_address()
        if address is None:
            return False
        self._suppression.suppress(
            address,
            reason=reason,
            source=event.provider,
            now=event.at,
            contact=event.contact,
            notification_id=event.notification_id,
        )
        return True

    def _apply(self, event: ProviderEvent, report: FeedbackReport) -> None:
        report.count(event)
        # The suppression first: a crash after it loses nothing (the redelivered event, now a
        # duplicate on the record, re-applies it idempotently); the other order could record the
        # bounce and lose the suppression for good.
        reason = _SUPPRESSING.get(event.feedback)
        if reason and self.suppress(event, reason):
            report.suppressed += 1
        if event.herald_sent:
            assert event.user_id and event.notification_id
            entry = LogEntry(
                channel=event.channel,
                outcome=event.feedback.value,
                provider=event.provider,
                detail=(event.detail or "")[:1000] or None,
                code=event.code,
                provider_message_id=event.provider_message_id,
                event_id=event.event_id,
            )
            written = self._ledger.record_feedback(
                event.user_id, event.notification_id, entry, state=_STATE[event.feedback], at=event.at
            )
            if written is FeedbackWrite.DUPLICATE:
                report.duplicates += 1
                return  # applied before (its suppression was re-applied above: idempotent)
            found = written is not FeedbackWrite.MISSING
            if found:
                report.logged += 1
                report.moved += int(written is FeedbackWrite.MOVED)
            else:
                report.unknown += 1
        else:
            found = False
            report.unknown += 1
        if event.feedback is Feedback.COMPLAINED and found and self._opt_out_of_marketing(event):
            report.opted_out_of_marketing += 1

    def _opt_out_of_marketing(self, event: ProviderEvent) -> bool:
        """A complaint: the person's own choice becomes "no marketing" (as if they set it)."""
        assert event.user_id

        def edit(own: dict[str, Any], _current: UserProfile | None) -> OwnChange:
            preferences = {**(own.get("preferences") or {}), "marketing_opt_in": False}
            return OwnChange(choices={**own, "preferences": preferences})

        try:
            self._users.edit_own(event.user_id, edit, now=event.at)
        except PersonErased:
            return False
        logger.info(
            "complaint: opted out of marketing",
            extra={"user_id": event.user_id, "notification_id": event.notification_id},
        )
        return True


def parse_time(value: Any, fallback: datetime) -> datetime:
    """A provider timestamp (ISO 8601 or epoch seconds), or `fallback` when it has none."""
    if isinstance(value, int | float):
        return datetime.fromtimestamp(value, UTC)
    if isinstance(value, str) and value:
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return fallback
    return fallback
