"""SES feedback: the events SES publishes through Herald's configuration set, applied (decision 022).

The configuration set publishes to the default EventBridge bus; a rule on `source: aws.ses` puts
each event on the feedback queue, whose function hands it here. An event is the EventBridge
envelope whose `detail-type` names the kind and whose `detail` is SES's event publishing record
(`eventType`, `mail`, and the object of that kind), as documented in the SES developer guide
("Contents of event data that Amazon SES publishes"):

| detail-type               | object          | Herald's news (herald.feedback)                      |
|---------------------------|-----------------|------------------------------------------------------|
| Email Delivered           | `delivery`      | delivered, per recipient                             |
| Email Bounced             | `bounce`        | Permanent: bounced (suppresses); Transient and       |
|                           |                 | Undetermined: soft_bounced, counted per address      |
| Email Complaint Received  | `complaint`     | complained (suppresses, opts out of marketing)       |
| Email Rejected            | `reject`        | failed (SES found a virus: nothing was sent)         |
| Email Rendering Failed    | `failure`       | failed                                               |
| Email Delivery Delayed    | `deliveryDelay` | deferred, per delayed recipient                      |
| Email Opened / Clicked    | `open`/`click`  | opened (engagement, the log only)                    |
| Email Sent                | `send`          | nothing: the email sender logged the send itself     |

Herald's sends carry the tags `notification_id` and `user_id` (herald.channels.ses); SES repeats
them in `mail.tags` as lists of strings. An event without both, or from another configuration set
than Herald's, is about mail Herald did not send: it is ignored entirely (no log, no suppression,
no count). Any other `detail-type` (Email Subscribed, account status events, CloudTrail calls) is
acknowledged and logged. An event of a known kind that does not have the documented shape is
rejected (the handler's batch processor moves it to the DLQ with the reason, decision 003).

Transient and Undetermined bounces are final for that message (SES publishes a soft bounce only
once it stopped retrying) but say nothing final about the address: each is counted in a small
item of the rate counters table keyed by the hashed address (`SoftBounces`), and the address is
suppressed (reason `soft_bounces`) when `threshold` of them fall within `window`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import parseaddr
from typing import Annotated, Any, Literal

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.parser.models import SqsRecordModel
from pydantic import AwareDatetime, BaseModel, ConfigDict, Discriminator, Field, Json, Tag

from herald.feedback import Feedback, FeedbackRecorder, FeedbackReport, ProviderEvent
from herald.models import Channel
from herald.provider_tags import decode_tag
from herald.stores.dynamo import to_attributes

logger = Logger(child=True)

PROVIDER = "ses"
SOURCE = "aws.ses"
NOTIFICATION_TAG = "notification_id"
USER_TAG = "user_id"
CONFIGURATION_SET_TAG = "ses:configuration-set"
SOFT_BOUNCE_REASON = "soft_bounces"  # the suppression entry's reason when the threshold is passed
DEFAULT_SOFT_BOUNCE_THRESHOLD = 3
DEFAULT_SOFT_BOUNCE_WINDOW_DAYS = 7
# Rate counters table key of an address's soft bounces. `#` first: no user id starts with one
# (herald.directory.USER_ID_PATTERN), so it never meets a rate counter `<user_id>#<hour>`.
SOFT_BOUNCE_KEY_PREFIX = "#soft_bounces#"

SENT = "Email Sent"
DELIVERED = "Email Delivered"
BOUNCED = "Email Bounced"
COMPLAINED = "Email Complaint Received"
REJECTED = "Email Rejected"
RENDERING_FAILED = "Email Rendering Failed"
DELAYED = "Email Delivery Delayed"
OPENED = "Email Opened"
CLICKED = "Email Clicked"
OTHER = "other"  # any detail-type Herald does not handle


# ---------------------------------------------------------------------------------------------
# SES's documented shapes (extra fields ignored: SES adds fields over time)
# ---------------------------------------------------------------------------------------------


class _Shape(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)


class SesMail(_Shape):
    """`mail`: the message the event is about."""

    message_id: str = Field(alias="messageId", min_length=1)
    timestamp: AwareDatetime | None = None
    source: str | None = None
    destination: list[str] = Field(default_factory=list)
    tags: dict[str, list[str]] = Field(default_factory=dict)

    def tag(self, name: str) -> str | None:
        """Herald's tag `name` as it was before encoding (herald.provider_tags)."""
        values = self.tags.get(name) or []
        if not values or not values[0]:
            return None
        try:
            return decode_tag(values[0])
        except ValueError:
            return None  # not a value Herald wrote


class BouncedRecipient(_Shape):
    email_address: str = Field(alias="emailAddress", min_length=1)
    action: str | None = None
    status: str | None = None
    diagnostic_code: str | None = Field(default=None, alias="diagnosticCode")


class Bounce(_Shape):
    bounce_type: Literal["Permanent", "Transient", "Undetermined"] = Field(alias="bounceType")
    bounce_sub_type: str | None = Field(default=None, alias="bounceSubType")
    bounced_recipients: list[BouncedRecipient] = Field(alias="bouncedRecipients", min_length=1)
    timestamp: AwareDatetime | None = None
    feedback_id: str = Field(alias="feedbackId", min_length=1)
    reporting_mta: str | None = Field(default=None, alias="reportingMTA")


class ComplainedRecipient(_Shape):
    email_address: str = Field(alias="emailAddress", min_length=1)


class Complaint(_Shape):
    complained_recipients: list[ComplainedRecipient] = Field(alias="complainedRecipients")
    timestamp: AwareDatetime | None = None
    feedback_id: str = Field(alias="feedbackId", min_length=1)
    complaint_sub_type: str | None = Field(default=None, alias="complaintSubType")
    complaint_feedback_type: str | None = Field(default=None, alias="complaintFeedbackType")
    user_agent: str | None = Field(default=None, alias="userAgent")


class Delivery(_Shape):
    timestamp: AwareDatetime | None = None
    recipients: list[str] = Field(default_factory=list)
    smtp_response: str | None = Field(default=None, alias="smtpResponse")
    processing_time_millis: int | None = Field(default=None, alias="processingTimeMillis")


class Reject(_Shape):
    reason: str | None = None


class RenderingFailure(_Shape):
    template_name: str | None = Field(default=None, alias="templateName")
    error_message: str | None = Field(default=None, alias="errorMessage")


class DelayedRecipient(_Shape):
    email_address: str = Field(alias="emailAddress", min_length=1)
    status: str | None = None
    diagnostic_code: str | None = Field(default=None, alias="diagnosticCode")


class DeliveryDelay(_Shape):
    timestamp: AwareDatetime | None = None
    delay_type: str | None = Field(default=None, alias="delayType")
    expiration_time: AwareDatetime | None = Field(default=None, alias="expirationTime")
    delayed_recipients: list[DelayedRecipient] = Field(alias="delayedRecipients", min_length=1)


class Open(_Shape):
    timestamp: AwareDatetime | None = None
    user_agent: str | None = Field(default=None, alias="userAgent")


class Click(_Shape):
    timestamp: AwareDatetime | None = None
    link: str | None = None


class _Detail(_Shape):
    mail: SesMail


class SentDetail(_Detail):
    send: dict[str, Any] = Field(default_factory=dict)


class DeliveredDetail(_Detail):
    delivery: Delivery


class BouncedDetail(_Detail):
    bounce: Bounce


class ComplainedDetail(_Detail):
    complaint: Complaint


class RejectedDetail(_Detail):
    reject: Reject


class RenderingFailedDetail(_Detail):
    failure: RenderingFailure


class DelayedDetail(_Detail):
    delivery_delay: DeliveryDelay = Field(alias="deliveryDelay")


class OpenedDetail(_Detail):
    open: Open


class ClickedDetail(_Detail):
    click: Click


class _Envelope(_Shape):
    """The EventBridge event (account, region and resources are not needed)."""

    id: str = Field(min_length=1)
    source: Literal["aws.ses"]
    time: AwareDatetime | None = None


class SentEvent(_Envelope):
    detail_type: Literal["Email Sent"] = Field(alias="detail-type")
    detail: SentDetail


class DeliveredEvent(_Envelope):
    detail_type: Literal["Email Delivered"] = Field(alias="detail-type")
    detail: DeliveredDetail


class BouncedEvent(_Envelope):
    detail_type: Literal["Email Bounced"] = Field(alias="detail-type")
    detail: BouncedDetail


class ComplainedEvent(_Envelope):
    detail_type: Literal["Email Complaint Received"] = Field(alias="detail-type")
    detail: ComplainedDetail


class RejectedEvent(_Envelope):
    detail_type: Literal["Email Rejected"] = Field(alias="detail-type")
    detail: RejectedDetail


class RenderingFailedEvent(_Envelope):
    detail_type: Literal["Email Rendering Failed"] = Field(alias="detail-type")
    detail: RenderingFailedDetail


class DelayedEvent(_Envelope):
    detail_type: Literal["Email Delivery Delayed"] = Field(alias="detail-type")
    detail: DelayedDetail


class OpenedEvent(_Envelope):
    detail_type: Literal["Email Opened"] = Field(alias="detail-type")
    detail: OpenedDetail


class ClickedEvent(_Envelope):
    detail_type: Literal["Email Clicked"] = Field(alias="detail-type")
    detail: ClickedDetail


class OtherSesEvent(_Envelope):
    """A detail-type Herald does not handle: acknowledged, never applied."""

    detail_type: str = Field(alias="detail-type")
    detail: Any = None


_KINDS: dict[str, type[_Envelope]] = {
    SENT: SentEvent,
    DELIVERED: DeliveredEvent,
    BOUNCED: BouncedEvent,
    COMPLAINED: ComplainedEvent,
    REJECTED: RejectedEvent,
    RENDERING_FAILED: RenderingFailedEvent,
    DELAYED: DelayedEvent,
    OPENED: OpenedEvent,
    CLICKED: ClickedEvent,
}


def _kind(value: Any) -> str:
    detail_type = (
        value.get("detail-type") if isinstance(value, Mapping) else getattr(value, "detail_type", None)
    )
    return detail_type if detail_type in _KINDS else OTHER


SesEvent = Annotated[
    Annotated[SentEvent, Tag(SENT)]
    | Annotated[DeliveredEvent, Tag(DELIVERED)]
    | Annotated[BouncedEvent, Tag(BOUNCED)]
    | Annotated[ComplainedEvent, Tag(COMPLAINED)]
    | Annotated[RejectedEvent, Tag(REJECTED)]
    | Annotated[RenderingFailedEvent, Tag(RENDERING_FAILED)]
    | Annotated[DelayedEvent, Tag(DELAYED)]
    | Annotated[OpenedEvent, Tag(OPENED)]
    | Annotated[ClickedEvent, Tag(CLICKED)]
    | Annotated[OtherSesEvent, Tag(OTHER)],
    Discriminator(_kind),
]


class SesFeedbackRecord(SqsRecordModel):
    """A feedback queue record: its body is one SES event (a record that does not validate is
    rejected alone, with the path of what is wrong)."""

    body: Json[SesEvent]  # type: ignore[assignment]


def peek_event_id(raw_body: str | None) -> str | None:
    """`ses:<SES message id>` (or the EventBridge id) of a body that may not validate."""
    try:
        body = json.loads(raw_body or "")
        message_id = ((body.get("detail") or {}).get("mail") or {}).get("messageId")
        if message_id:
            return f"ses:{message_id}"
        return str(body["id"]) if body.get("id") is not None else None
    except (ValueError, AttributeError, TypeError, KeyError):
        return None


# ---------------------------------------------------------------------------------------------
# SES events -> Herald's news
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SoftBounce:
    """A Transient or Undetermined bounce of one address (`event` has its contact)."""

    event: ProviderEvent
    feedback_id: str


@dataclass(frozen=True)
class SesNews:
    """What one SES event means for Herald: the provider events to apply, the soft bounces to count,
    or why it is ignored (then nothing else)."""

    events: tuple[ProviderEvent, ...] = ()
    soft_bounces: tuple[SoftBounce, ...] = ()
    ignored: str | None = None


def _bare(address: str) -> str:
    return (parseaddr(address)[1] or address).strip()


def _contacts(mail: SesMail, reported: Iterable[str]) -> list[tuple[str, str]]:
    """(the address Herald sent to, the address the report names) per reported recipient. Herald
    sends each message to one address: a report about it is about that address, even when the
    receiving side names another (a forward's Final-Recipient, another spelling)."""
    named = [_bare(r) for r in reported if r and r.strip()]
    if len(mail.destination) == 1:
        sent_to = _bare(mail.destination[0])
        return [(sent_to, r) for r in named] or [(sent_to, sent_to)]
    return [(r, r) for r in named]


def _joined(*parts: str | None) -> str | None:
    text = "; ".join(p for p in parts if p)
    return text or None


def _also(sent_to: str, named: str) -> str | None:
    return f"reported for {named}" if named.lower() != sent_to.lower() else None


def _when(*moments: datetime | None) -> datetime:
    return next((m for m in moments if m is not None), None) or datetime.now(UTC)


def interpret(event: Any, *, configuration_set: str | None = None) -> SesNews:
    """What an SES event (a validated `SesEvent`) means for Herald. `configuration_set`: Herald's;
    an event of another configuration set is ignored (the default bus carries the whole account's
    SES events, and other mail may carry tags of the same names)."""
    if isinstance(event, OtherSesEvent):
        return SesNews(ignored=f"detail-type {event.detail_type!r} is not SES sending feedback Herald uses")
    mail: SesMail = event.detail.mail
    notification_id, user_id = mail.tag(NOTIFICATION_TAG), mail.tag(USER_TAG)
    if not (notification_id and user_id):
        return SesNews(ignored="not sent by Herald (no notification_id / user_id tags)")
    their_set = mail.tag(CONFIGURATION_SET_TAG)
    if configuration_set and their_set and their_set != configuration_set:
        return SesNews(ignored=f"sent through configuration set {their_set!r}, not Herald's")
    if isinstance(event, SentEvent):
        return SesNews(ignored="a send: the email sender logged it")

    def news(feedback: Feedback, contact: str | None, at: datetime, **fields: Any) -> ProviderEvent:
        return ProviderEvent(
            channel=Channel.EMAIL,
            feedback=feedback,
            provider=PROVIDER,
            at=at,
            user_id=user_id,
            notification_id=notification_id,
            contact=contact,
            provider_message_id=mail.message_id,
            **fields,
        )

    fallback = _when(event.time, mail.timestamp)
    single = _bare(mail.destination[0]) if len(mail.destination) == 1 else None
    addressed: list[str | None] = [_bare(to) for to in mail.destination] or [None]
    match event:
        case DeliveredEvent(detail=DeliveredDetail(delivery=delivery)):
            at = _when(delivery.timestamp, fallback)
            recipients = _contacts(mail, delivery.recipients)
            return SesNews(
                events=tuple(
                    news(
                        Feedback.DELIVERED,
                        sent_to,
                        at,
                        detail=_joined(delivery.smtp_response, _also(sent_to, named)),
                    )
                    for sent_to, named in recipients
                )
            )
        case BouncedEvent(detail=BouncedDetail(bounce=bounce)):
            return _bounce_news(mail, bounce, news, _when(bounce.timestamp, fallback))
        case ComplainedEvent(detail=ComplainedDetail(complaint=complaint)):
            if complaint.complaint_feedback_type == "not-spam":
                return SesNews(ignored="a not-spam feedback report (the receiver withdraws a complaint)")
            at = _when(complaint.timestamp, fallback)
            reported = [r.email_address for r in complaint.complained_recipients]
            detail = _joined(
                f"complaint ({complaint.complaint_feedback_type or 'unspecified'})",
                complaint.complaint_sub_type,
                complaint.user_agent and f"reported by {complaint.user_agent}",
            )
            return SesNews(
                events=tuple(
                    news(
                        Feedback.COMPLAINED,
                        sent_to,
                        at,
                        code=complaint.complaint_feedback_type,
                        detail=_joined(detail, _also(sent_to, named)),
                    )
                    for sent_to, named in _contacts(mail, reported)
                )
            )
        case RejectedEvent(detail=RejectedDetail(reject=reject)):
            return SesNews(
                events=tuple(
                    news(
                        Feedback.FAILED,
                        to,
                        fallback,
                        code="Reject",
                        detail=f"rejected by SES: {reject.reason}",
                    )
                    for to in addressed
                )
            )
        case RenderingFailedEvent(detail=RenderingFailedDetail(failure=failure)):
            detail = _joined(
                "SES could not render the message",
                failure.template_name and f"template {failure.template_name}",
                failure.error_message,
            )
            return SesNews(
                events=tuple(
                    news(Feedback.FAILED, to, fallback, code="RenderingFailure", detail=detail)
                    for to in addressed
                )
            )
        case DelayedEvent(detail=DelayedDetail(delivery_delay=delay)):
            at = _when(delay.timestamp, fallback)
            until = delay.expiration_time and f"SES keeps trying until {delay.expiration_time.isoformat()}"
            by_address = {r.email_address: r for r in delay.delayed_recipients}
            return SesNews(
                events=tuple(
                    news(
                        Feedback.DEFERRED,
                        sent_to,
                        at,
                        code=by_address[named].status if named in by_address else None,
                        detail=_joined(
                            delay.delay_type,
                            by_address[named].diagnostic_code if named in by_address else None,
                            until,
                            _also(sent_to, named),
                        ),
                    )
                    for sent_to, named in _contacts(mail, by_address)
                )
            )
        case OpenedEvent(detail=OpenedDetail(open=opened)):
            at = _when(opened.timestamp, fallback)
            return SesNews(events=(news(Feedback.OPENED, single, at, detail="opened"),))
        case ClickedEvent(detail=ClickedDetail(click=click)):
            # A click proves the message was opened. The link is not logged: it may carry a token
            # (the unsubscribe link does).
            at = _when(click.timestamp, fallback)
            return SesNews(events=(news(Feedback.OPENED, single, at, detail="a link was clicked"),))
    raise TypeError(f"not an SES event model: {type(event).__name__}")  # pragma: no cover


def _bounce_news(mail: SesMail, bounce: Bounce, news: Callable[..., ProviderEvent], at: datetime) -> SesNews:
    by_address = {r.email_address: r for r in bounce.bounced_recipients}
    kind = f"{bounce.bounce_type}/{bounce.bounce_sub_type or 'General'}"
    events: list[ProviderEvent] = []
    soft: list[SoftBounce] = []
    for sent_to, named in _contacts(mail, by_address):
        recipient = by_address.get(named)
        provider_event = news(
            Feedback.BOUNCED if bounce.bounce_type == "Permanent" else Feedback.SOFT_BOUNCED,
            sent_to,
            at,
            code=recipient.status if recipient else None,
            detail=_joined(kind, recipient.diagnostic_code if recipient else None, _also(sent_to, named)),
        )
        if bounce.bounce_type == "Permanent":
            events.append(provider_event)
        else:
            soft.append(SoftBounce(provider_event, bounce.feedback_id))
    return SesNews(events=tuple(events), soft_bounces=tuple(soft))


# ---------------------------------------------------------------------------------------------
# Soft bounces: counted per address, within a sliding window
# ---------------------------------------------------------------------------------------------


def soft_bounce_key(address: str) -> dict[str, str]:
    """Rate counters table key of an address's soft bounces (`address`: a hashed suppression key)."""
    return {"pk": SOFT_BOUNCE_KEY_PREFIX + address}


def _entry(at: datetime, feedback_id: str) -> str:
    return f"{at.astimezone(UTC).strftime('%Y-%m-%dT%H:%M:%S.%fZ')}|{feedback_id}"


def _entry_time(entry: str) -> datetime | None:
    try:
        return datetime.strptime(entry.split("|", 1)[0], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    except ValueError:
        return None


class SoftBounces:
    """An address's soft bounces: one item per hashed address holding a string set of
    `<time>|<SES feedback id>`. Adding is one atomic `ADD` (concurrent bounces are never lost, and a
    redelivered event, whose feedback id is already in the set, is not counted twice); the count is
    read from what that same call returns. Entries older than the window are pruned, and the item
    expires (TTL) a window after the last bounce. No scans, no read-modify-write."""

    def __init__(
        self,
        client: Any,
        table: str,
        *,
        window: timedelta = timedelta(days=DEFAULT_SOFT_BOUNCE_WINDOW_DAYS),
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._client = client
        self._table = table
        self.window = window
        self._clock = clock

    def add(self, address: str, feedback_id: str, at: datetime) -> int:
        """Count a soft bounce of `address` (a hashed suppression key) at `at`; returns how many
        soft bounces of it fall within the window before `at` (this one included; later ones, when
        events arrive out of order, too)."""
        key = to_attributes(soft_bounce_key(address))
        expires = int((max(self._clock(), at) + self.window).timestamp())
        response = self._client.update_item(
            TableName=self._table,
            Key=key,
            UpdateExpression="ADD bounces :entry SET expires_at = :expires",
            ExpressionAttributeValues={
                ":entry": {"SS": [_entry(at, feedback_id)]},
                ":expires": {"N": str(expires)},
            },
            ReturnValues="ALL_NEW",
        )
        entries = response["Attributes"]["bounces"]["SS"]
        cutoff = at - self.window
        timed = [(entry, _entry_time(entry)) for entry in entries]
        stale = [entry for entry, moment in timed if moment is None or moment <= cutoff]
        if stale:  # removing given elements is safe beside concurrent ADDs of others
            self._client.update_item(
                TableName=self._table,
                Key=key,
                UpdateExpression="DELETE bounces :stale",
                ExpressionAttributeValues={":stale": {"SS": stale}},
            )
        return sum(1 for _, moment in timed if moment is not None and moment > cutoff)


# ---------------------------------------------------------------------------------------------
# Applying
# ---------------------------------------------------------------------------------------------


@dataclass
class SesOutcome:
    detail_type: str
    ignored: str | None = None
    report: FeedbackReport = field(default_factory=FeedbackReport)
    soft_bounces: dict[str, int] = field(default_factory=dict)  # contact -> count within the window
    suppressed_for_soft_bounces: int = 0

    def summary(self) -> dict[str, Any]:
        """JSON for the handler's result (and the idempotency record)."""
        return {
            "detail_type": self.detail_type,
            "ignored": self.ignored,
            "logged": self.report.logged,
            "moved": self.report.moved,
            "suppressed": self.report.suppressed + self.suppressed_for_soft_bounces,
            "opted_out_of_marketing": self.report.opted_out_of_marketing,
            "unknown": self.report.unknown,
            "counts": dict(self.report.counts),
            "soft_bounces_within_window": len(self.soft_bounces),
            "suppressed_for_soft_bounces": self.suppressed_for_soft_bounces,
        }


class SesFeedback:
    """Applies SES events: their news through `FeedbackRecorder`, soft bounces through `SoftBounces`
    (suppressing the address at `threshold` within the window)."""

    def __init__(
        self,
        recorder: FeedbackRecorder,
        soft_bounces: SoftBounces,
        *,
        threshold: int = DEFAULT_SOFT_BOUNCE_THRESHOLD,
        configuration_set: str | None = None,
    ) -> None:
        if threshold < 1:
            raise ValueError("the soft bounce threshold must be at least 1")
        self._recorder = recorder
        self._soft_bounces = soft_bounces
        self._threshold = threshold
        self._configuration_set = configuration_set or None

    def apply(self, event: Any) -> SesOutcome:
        """Apply one validated `SesEvent`. Safe to repeat: states move forward only, suppressing and
        opting out are idempotent, and a soft bounce is counted once per SES feedback id."""
        outcome = SesOutcome(detail_type=event.detail_type)
        news = interpret(event, configuration_set=self._configuration_set)
        if news.ignored:
            outcome.ignored = news.ignored
            logger.info("ses event ignored", extra={"detail_type": event.detail_type, "reason": news.ignored})
            return outcome
        events = list(news.events)
        over: list[ProviderEvent] = []
        days = self._soft_bounces.window / timedelta(days=1)
        for soft in news.soft_bounces:
            address = soft.event.suppression_address()
            if address is None:
                events.append(soft.event)
                continue
            count = self._soft_bounces.add(address, soft.feedback_id, soft.event.at)
            outcome.soft_bounces[soft.event.contact or ""] = count
            passed = count >= self._threshold
            note = f"soft bounce {count} of {self._threshold} within {days:g} days" + (
                ": address suppressed" if passed else ""
            )
            counted = soft.event.model_copy(update={"detail": _joined(soft.event.detail, note)})
            events.append(counted)
            if passed:
                over.append(counted)
        outcome.report = self._recorder.apply(events)
        for counted in over:
            if self._recorder.suppress(counted, SOFT_BOUNCE_REASON):
                outcome.suppressed_for_soft_bounces += 1
        logger.info(
            "ses event applied",
            extra={
                "detail_type": event.detail_type,
                "notification_id": next((e.notification_id for e in events), None),
                **outcome.summary(),
            },
        )
        return outcome
