"""SES feedback for the local stack: the events SES publishes for the mailbox simulator.

moto records SES sends but never produces feedback. This watches the sends moto records and, for
each new message addressed to a mailbox-simulator address (`success@`, `bounce@`, `complaint@`,
`ooto@`, `suppressionlist@simulator.amazonses.com`, also with a `+label` before the `@`), puts on
the DEFAULT event bus the events SES would publish through the configuration set's EventBridge
destination, in SES's own shape (source `aws.ses`, `detail` = the event publishing record):

| recipient          | events (detail-type)                                           |
|--------------------|----------------------------------------------------------------|
| success@           | Email Sent, Email Delivered                                    |
| bounce@            | Email Sent, Email Bounced (Permanent / General)                 |
| complaint@         | Email Sent, Email Delivered, Email Complaint Received (abuse)  |
| ooto@              | Email Sent, Email Delivered (the autoresponse is not an event) |
| suppressionlist@   | Email Sent, Email Bounced (Permanent / OnAccountSuppressionList)|
| anything else      | nothing                                                        |

As in SES, only a send through a configuration set publishes events. moto keeps neither the
`ConfigurationSetName` nor the tags of a send, so they are recovered, in this order, from: the
parameters of the SendEmail / SendRawEmail call when it was made by boto3 in this process
(`SendCapture`, installed on boto3's default session: the in-process handlers of the runner send
that way), the raw message's `X-SES-CONFIGURATION-SET` / `X-SES-MESSAGE-TAGS` headers, and the
sending identity's default configuration set. `event_types` restricts the events to a
configuration set destination's MatchingEventTypes (by default: all of the above).

The sends are read from moto's own backend when the moto server runs in this process (cheap) and
otherwise from `GET {aws_endpoint}/moto-api/data.json` (which serialises all of moto's state, so
it is polled less often as it grows).
"""

from __future__ import annotations

import gc
import json
import logging
import re
import threading
import time
import urllib.request
import uuid
from collections import OrderedDict
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from email.parser import HeaderParser
from email.policy import compat32
from email.utils import format_datetime, getaddresses, parseaddr
from typing import Any, Protocol
from urllib.parse import urlsplit

from local.periodic import PeriodicWorker

logger = logging.getLogger("local.ses_feedback")

Clock = Callable[[], float]

SIMULATOR_DOMAIN = "simulator.amazonses.com"
_SIMULATOR = re.compile(
    r"^(?P<scenario>success|bounce|complaint|ooto|suppressionlist)(\+[^@]*)?@simulator\.amazonses\.com$",
    re.IGNORECASE,
)
# The headers SES reads and removes before sending.
SES_CONFIGURATION_SET_HEADER = "X-SES-CONFIGURATION-SET"
SES_MESSAGE_TAGS_HEADER = "X-SES-MESSAGE-TAGS"

DETAIL_TYPES = {
    "Send": "Email Sent",
    "Delivery": "Email Delivered",
    "Bounce": "Email Bounced",
    "Complaint": "Email Complaint Received",
    "Reject": "Email Rejected",
    "RenderingFailure": "Email Rendering Failed",
    "DeliveryDelay": "Email Delivery Delayed",
}

REPORTING_MTA = "a8-30.smtp-out.amazonses.com"
SIMULATOR_BOUNCE_DIAGNOSTIC = "smtp; 550 5.1.1 user unknown"
SUPPRESSION_DIAGNOSTIC = (
    "Amazon SES did not send the message to this address because it is on the suppression list "
    "for your account. For more information about removing addresses from the suppression list, "
    "see the Amazon SES Developer Guide at "
    "https://docs.aws.amazon.com/ses/latest/dg/sending-email-suppression-list.html"
)
SIMULATOR_USER_AGENT = "Amazon SES Mailbox Simulator"
SMTP_RESPONSE = "250 2.6.0 Message received"
SOURCE_IP = "127.0.0.1"
OUTGOING_IP = "127.0.0.1"
CALLER_IDENTITY = "herald-local"


def simulator_scenario(address: str) -> str | None:
    """`bounce` for `Bounce+x@simulator.amazonses.com` (or `Name <...>`); None if not the simulator."""
    _, bare = parseaddr(address)
    match = _SIMULATOR.match((bare or address).strip())
    return match.group("scenario").lower() if match else None


def normalize_event_type(name: str) -> str:
    """`BOUNCE`, `bounce`, `Bounce`, `RENDERING_FAILURE`, `renderingFailure` -> one spelling."""
    return name.replace("_", "").replace("-", "").lower()


# ---------------------------------------------------------------------------------------------
# The sent message, as SES sees it
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SentMail:
    message_id: str
    source: str
    destinations: tuple[str, ...]
    headers: tuple[tuple[str, str], ...]
    timestamp: datetime
    operation: str = "SendEmail"
    configuration_set: str | None = None
    tags: Mapping[str, str] = field(default_factory=dict)
    identity: str | None = None  # the verified identity used (address or domain)

    @property
    def from_domain(self) -> str:
        return parseaddr(self.source)[1].rpartition("@")[2]


def parse_message_tags(header: str | None) -> dict[str, str]:
    """`X-SES-MESSAGE-TAGS: name1=value1, name2=value2` -> {name1: value1, name2: value2}."""
    tags: dict[str, str] = {}
    for part in (header or "").split(","):
        name, sep, value = part.partition("=")
        if sep and name.strip():
            tags[name.strip()] = value.strip()
    return tags


def _bare(address: str) -> str:
    return parseaddr(address)[1] or address.strip()


def _unique(addresses: Iterable[str]) -> tuple[str, ...]:
    seen: set[str] = set()
    result = []
    for address in addresses:
        bare = _bare(address)
        if bare and bare.lower() not in seen:
            seen.add(bare.lower())
            result.append(bare)
    return tuple(result)


def raw_headers(raw_data: str) -> list[tuple[str, str]]:
    """The header fields of a raw MIME message, in order, unfolded."""
    message = HeaderParser(policy=compat32).parsestr(raw_data, headersonly=True)
    return [(name, re.sub(r"\r?\n[ \t]+", " ", str(value)).strip()) for name, value in message.items()]


def mail_from_raw(
    *,
    message_id: str,
    source: str | None,
    destinations: Iterable[str],
    raw_data: str,
    timestamp: datetime,
    operation: str = "SendRawEmail",
    configuration_set: str | None = None,
    tags: Mapping[str, str] | None = None,
) -> SentMail:
    """A raw send. Configuration set and tags come from the arguments, else the X-SES headers."""
    headers = raw_headers(raw_data)
    lookup = {name.lower(): value for name, value in headers}
    header_tags = parse_message_tags(lookup.get(SES_MESSAGE_TAGS_HEADER.lower()))
    kept = tuple(
        (n, v)
        for n, v in headers
        if n.lower() not in (SES_CONFIGURATION_SET_HEADER.lower(), SES_MESSAGE_TAGS_HEADER.lower())
    )
    return SentMail(
        message_id=message_id,
        source=source or lookup.get("from", ""),
        destinations=_unique(destinations),
        headers=kept,
        timestamp=timestamp,
        operation=operation,
        configuration_set=configuration_set or lookup.get(SES_CONFIGURATION_SET_HEADER.lower()) or None,
        tags={**header_tags, **(tags or {})},
    )


def mail_from_simple(
    *,
    message_id: str,
    source: str,
    destinations: Mapping[str, Iterable[str]],
    subject: str | None,
    body: str | None,
    timestamp: datetime,
    operation: str = "SendEmail",
    configuration_set: str | None = None,
    tags: Mapping[str, str] | None = None,
    reply_to: Iterable[str] = (),
) -> SentMail:
    """A send whose MIME SES builds (SendEmail Simple content, templated sends)."""
    to = list(destinations.get("ToAddresses", []))
    cc = list(destinations.get("CcAddresses", []))
    bcc = list(destinations.get("BccAddresses", []))
    headers: list[tuple[str, str]] = [("From", source)]
    if reply_to := list(reply_to):
        headers.append(("Reply-To", ", ".join(reply_to)))
    if to:
        headers.append(("To", ", ".join(to)))
    if cc:
        headers.append(("CC", ", ".join(cc)))
    if subject is not None:
        headers.append(("Subject", subject))
    html = (body or "").lstrip().startswith("<")
    headers += [
        ("MIME-Version", "1.0"),
        ("Content-Type", f"text/{'html' if html else 'plain'}; charset=UTF-8"),
        ("Content-Transfer-Encoding", "7bit"),
        ("Date", format_datetime(timestamp.astimezone(UTC))),
        ("Message-ID", f"<{message_id}@email.amazonses.com>"),
    ]
    return SentMail(
        message_id=message_id,
        source=source,
        destinations=_unique(to + cc + bcc),
        headers=tuple(headers),
        timestamp=timestamp,
        operation=operation,
        configuration_set=configuration_set,
        tags=dict(tags or {}),
    )


# ---------------------------------------------------------------------------------------------
# SES event publishing records and the EventBridge events (pure)
# ---------------------------------------------------------------------------------------------


def iso_millis(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def new_feedback_id(moment: datetime) -> str:
    """SES feedback ids look like `0100018c5f3c...-<uuid>-000000`."""
    millis = int(moment.timestamp() * 1000)
    return f"0100{millis:012x}-{uuid.uuid4()}-000000"


def common_headers(mail: SentMail) -> dict[str, Any]:
    lookup: dict[str, str] = {}
    for name, value in mail.headers:
        lookup.setdefault(name.lower(), value)
    common: dict[str, Any] = {}
    if "from" in lookup:
        common["from"] = [lookup["from"]]
    if "reply-to" in lookup:
        common["replyTo"] = [f"{n} <{a}>" if n else a for n, a in getaddresses([lookup["reply-to"]])]
    if "date" in lookup:
        common["date"] = lookup["date"]
    for header, key in (("to", "to"), ("cc", "cc"), ("bcc", "bcc")):
        if header in lookup:
            common[key] = [f"{n} <{a}>" if n else a for n, a in getaddresses([lookup[header]])]
    common["messageId"] = mail.message_id
    if "subject" in lookup:
        common["subject"] = lookup["subject"]
    return common


def mail_object(mail: SentMail, *, account: str, region: str, outgoing: bool = False) -> dict[str, Any]:
    """The `mail` object of an SES event publishing record."""
    identity = mail.identity or _bare(mail.source)
    tags: dict[str, list[str]] = {
        "ses:operation": [mail.operation],
        "ses:configuration-set": [mail.configuration_set or ""],
        "ses:source-ip": [SOURCE_IP],
        "ses:from-domain": [mail.from_domain],
        "ses:caller-identity": [CALLER_IDENTITY],
    }
    if outgoing:
        tags["ses:outgoing-ip"] = [OUTGOING_IP]
        tags["ses:outgoing-tls-version"] = ["TLSv1.3"]
    for name, value in mail.tags.items():
        tags[name] = [value]
    return {
        "timestamp": iso_millis(mail.timestamp),
        "source": mail.source,
        "sourceArn": f"arn:aws:ses:{region}:{account}:identity/{identity}",
        "sendingAccountId": account,
        "messageId": mail.message_id,
        "destination": list(mail.destinations),
        "headersTruncated": False,
        "headers": [{"name": name, "value": value} for name, value in mail.headers],
        "commonHeaders": common_headers(mail),
        "tags": tags,
    }


def send_record(mail: SentMail, *, account: str, region: str) -> dict[str, Any]:
    return {"eventType": "Send", "mail": mail_object(mail, account=account, region=region), "send": {}}


def delivery_record(
    mail: SentMail, recipients: list[str], *, account: str, region: str, at: datetime
) -> dict[str, Any]:
    return {
        "eventType": "Delivery",
        "mail": mail_object(mail, account=account, region=region, outgoing=True),
        "delivery": {
            "timestamp": iso_millis(at),
            "processingTimeMillis": max(0, int((at - mail.timestamp).total_seconds() * 1000)),
            "recipients": recipients,
            "smtpResponse": SMTP_RESPONSE,
            "reportingMTA": REPORTING_MTA,
            "remoteMtaIp": OUTGOING_IP,
        },
    }


def bounce_record(
    mail: SentMail,
    recipients: list[str],
    *,
    account: str,
    region: str,
    at: datetime,
    sub_type: str = "General",
    feedback_id: str | None = None,
) -> dict[str, Any]:
    suppressed = sub_type == "OnAccountSuppressionList"
    bounced = [
        {
            "emailAddress": address,
            "action": "failed",
            "status": "5.1.1",
            "diagnosticCode": SUPPRESSION_DIAGNOSTIC if suppressed else SIMULATOR_BOUNCE_DIAGNOSTIC,
        }
        for address in recipients
    ]
    bounce: dict[str, Any] = {
        "feedbackId": feedback_id or new_feedback_id(at),
        "bounceType": "Permanent",
        "bounceSubType": sub_type,
        "bouncedRecipients": bounced,
        "timestamp": iso_millis(at),
    }
    if not suppressed:  # no DSN when SES itself refuses the address
        bounce["reportingMTA"] = f"dsn; {REPORTING_MTA}"
        bounce["remoteMtaIp"] = OUTGOING_IP
    return {
        "eventType": "Bounce",
        "bounce": bounce,
        "mail": mail_object(mail, account=account, region=region),
    }


def complaint_record(
    mail: SentMail,
    recipients: list[str],
    *,
    account: str,
    region: str,
    at: datetime,
    feedback_id: str | None = None,
) -> dict[str, Any]:
    return {
        "eventType": "Complaint",
        "complaint": {
            "feedbackId": feedback_id or new_feedback_id(at),
            "complaintSubType": None,
            "complainedRecipients": [{"emailAddress": address} for address in recipients],
            "timestamp": iso_millis(at),
            "userAgent": SIMULATOR_USER_AGENT,
            "complaintFeedbackType": "abuse",
            "arrivalDate": iso_millis(at),
        },
        "mail": mail_object(mail, account=account, region=region),
    }


def publishing_records(
    mail: SentMail, *, account: str, region: str, now: datetime, event_types: Collection[str] | None = None
) -> list[dict[str, Any]]:
    """Every SES event publishing record the mailbox simulator causes for `mail`, in order.

    Empty when no recipient is a simulator address. `event_types` (SES names, any spelling)
    keeps only those types, as a configuration set destination's MatchingEventTypes does.
    """
    by_scenario: dict[str, list[str]] = {}
    for address in mail.destinations:
        if scenario := simulator_scenario(address):
            by_scenario.setdefault(scenario, []).append(address)
    if not by_scenario:
        return []
    common = {"account": account, "region": region}
    records = [send_record(mail, **common)]
    delivered = (
        by_scenario.get("success", []) + by_scenario.get("ooto", []) + by_scenario.get("complaint", [])
    )
    if delivered:
        records.append(delivery_record(mail, delivered, at=now, **common))
    if bounced := by_scenario.get("bounce"):
        records.append(bounce_record(mail, bounced, at=now, **common))
    if suppressed := by_scenario.get("suppressionlist"):
        records.append(bounce_record(mail, suppressed, at=now, sub_type="OnAccountSuppressionList", **common))
    if complained := by_scenario.get("complaint"):
        records.append(complaint_record(mail, complained, at=now + timedelta(milliseconds=1), **common))
    if event_types is not None:
        wanted = {normalize_event_type(t) for t in event_types}
        records = [r for r in records if normalize_event_type(r["eventType"]) in wanted]
    return records


def eventbridge_event(
    record: Mapping[str, Any],
    *,
    account: str,
    region: str,
    configuration_set: str,
    event_id: str | None = None,
) -> dict[str, Any]:
    """The EventBridge event SES puts on the default bus for one publishing record."""
    kind = record["eventType"]
    moment = (record.get(kind[:1].lower() + kind[1:]) or {}).get("timestamp") or record["mail"]["timestamp"]
    return {
        "version": "0",
        "id": event_id or str(uuid.uuid4()),
        "detail-type": DETAIL_TYPES[kind],
        "source": "aws.ses",
        "account": account,
        "time": moment[:19] + "Z",
        "region": region,
        "resources": [f"arn:aws:ses:{region}:{account}:configuration-set/{configuration_set}"],
        "detail": dict(record),
    }


def ses_events(
    mail: SentMail, *, account: str, region: str, now: datetime, event_types: Collection[str] | None = None
) -> list[dict[str, Any]]:
    """The EventBridge events SES publishes for `mail` (none without a configuration set)."""
    if not mail.configuration_set:
        return []
    return [
        eventbridge_event(record, account=account, region=region, configuration_set=mail.configuration_set)
        for record in publishing_records(
            mail, account=account, region=region, now=now, event_types=event_types
        )
    ]


# ---------------------------------------------------------------------------------------------
# What moto does not keep: the configuration set and tags of boto3 sends in this process
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CapturedSend:
    operation: str
    configuration_set: str | None
    tags: dict[str, str]
    reply_to: tuple[str, ...] = ()


_CAPTURED_OPERATIONS = (
    ("sesv2", "SendEmail"),
    ("ses", "SendEmail"),
    ("ses", "SendRawEmail"),
    ("ses", "SendTemplatedEmail"),
)
_CONTEXT_KEY = "herald_local_ses_send"


class SendCapture:
    """botocore hooks on a boto3 session that remember, by SES message id, the configuration set,
    tags and operation of every successful SES send made through that session's clients.

    Clients copy their session's hooks when they are created: install before the code that
    creates the SES client is imported.

    moto records a send while it serves the request, before the client has parsed the answer and
    this capture has remembered it: `sending()` tells a reader that such a send may be in flight.
    """

    # A send that neither answered nor failed within this long is not waited for (a request that
    # failed before it was sent, e.g. invalid parameters, runs neither after-call hook).
    IN_FLIGHT_SECONDS = 30.0

    def __init__(self, max_entries: int = 10_000) -> None:
        self._sends: OrderedDict[str, CapturedSend] = OrderedDict()
        self._in_flight: dict[int, float] = {}  # id(request context) -> when its parameters were built
        self._lock = threading.Lock()
        self._max = max_entries
        self._unique = f"herald-local-ses-capture-{id(self)}"
        self._events: Any = None

    def install(self, session: Any = None) -> None:
        if self._events is not None:
            return
        if session is None:
            import boto3

            if boto3.DEFAULT_SESSION is None:
                boto3.setup_default_session()
            session = boto3.DEFAULT_SESSION
        events = session.events
        for service, operation in _CAPTURED_OPERATIONS:
            events.register(
                f"before-parameter-build.{service}.{operation}",
                self._before,
                unique_id=f"{self._unique}-before-{service}-{operation}",
            )
            events.register(
                f"after-call.{service}.{operation}",
                self._after,
                unique_id=f"{self._unique}-after-{service}-{operation}",
            )
            events.register(
                f"after-call-error.{service}.{operation}",
                self._failed,
                unique_id=f"{self._unique}-error-{service}-{operation}",
            )
        self._events = events

    def uninstall(self) -> None:
        if self._events is None:
            return
        for service, operation in _CAPTURED_OPERATIONS:
            self._events.unregister(
                f"before-parameter-build.{service}.{operation}",
                unique_id=f"{self._unique}-before-{service}-{operation}",
            )
            self._events.unregister(
                f"after-call.{service}.{operation}", unique_id=f"{self._unique}-after-{service}-{operation}"
            )
            self._events.unregister(
                f"after-call-error.{service}.{operation}",
                unique_id=f"{self._unique}-error-{service}-{operation}",
            )
        self._events = None
        with self._lock:
            self._in_flight.clear()

    def _before(self, params: Mapping[str, Any], model: Any, context: dict[str, Any], **_: Any) -> None:
        tag_list = params.get("EmailTags") or params.get("Tags") or []
        reply_to = params.get("ReplyToAddresses") or []
        context[_CONTEXT_KEY] = CapturedSend(
            operation=model.name,
            configuration_set=params.get("ConfigurationSetName"),
            tags={t["Name"]: t["Value"] for t in tag_list if "Name" in t and "Value" in t},
            reply_to=tuple(reply_to),
        )
        with self._lock:
            self._in_flight[id(context)] = time.monotonic()

    def _after(
        self, http_response: Any, parsed: Mapping[str, Any], context: dict[str, Any], **_: Any
    ) -> None:
        captured = context.get(_CONTEXT_KEY)
        message_id = parsed.get("MessageId") if isinstance(parsed, Mapping) else None
        with self._lock:
            self._in_flight.pop(id(context), None)
            if captured is None or not message_id or getattr(http_response, "status_code", 500) >= 300:
                return
            self._sends[message_id] = captured
            while len(self._sends) > self._max:
                self._sends.popitem(last=False)

    def _failed(self, context: dict[str, Any], **_: Any) -> None:
        with self._lock:
            self._in_flight.pop(id(context), None)

    def sending(self) -> bool:
        """Whether a captured send may be between moto recording it and `get` knowing it."""
        oldest = time.monotonic() - self.IN_FLIGHT_SECONDS
        with self._lock:
            for key in [k for k, started in self._in_flight.items() if started < oldest]:
                del self._in_flight[key]
            return bool(self._in_flight)

    def get(self, message_id: str) -> CapturedSend | None:
        with self._lock:
            return self._sends.get(message_id)


# ---------------------------------------------------------------------------------------------
# Where moto keeps the sends
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RecordedSend:
    """One send as moto recorded it."""

    kind: str  # "raw" | "simple" | "template"
    message_id: str
    source: str | None
    destinations: Any  # raw: list of addresses; simple/template: {"ToAddresses": [...], ...}
    raw_data: str | None = None
    subject: str | None = None
    body: str | None = None

    def addresses(self) -> list[str]:
        if isinstance(self.destinations, Mapping):
            return [a for values in self.destinations.values() for a in values or []]
        return list(self.destinations or [])


def _recorded(kind: str, data: Mapping[str, Any]) -> RecordedSend:
    return RecordedSend(
        kind=kind,
        message_id=str(data.get("id")),
        source=data.get("source"),
        destinations=data.get("destinations") or [],
        raw_data=data.get("raw_data"),
        subject=data.get("subject"),
        body=data.get("body"),
    )


_MODEL_KINDS = {"RawMessage": "raw", "Message": "simple", "TemplateMessage": "template"}


class SentMailSource(Protocol):
    def new_messages(self) -> list[RecordedSend]: ...


class InProcessMotoMail:
    """Reads `ses_backends[account][region].sent_messages` of a moto running in this process."""

    def __init__(self, *, account: str, region: str) -> None:
        self._account = account
        self._region = region
        self._cursor = 0
        self.poll_cost_seconds = 0.0

    def new_messages(self) -> list[RecordedSend]:
        from moto.ses.models import ses_backends

        regions = dict.get(ses_backends, self._account)
        backend = dict.get(regions, self._region) if regions is not None else None
        if backend is None:
            return []
        sent = list(backend.sent_messages)
        if len(sent) < self._cursor:  # moto was reset
            self._cursor = 0
        fresh, self._cursor = sent[self._cursor :], len(sent)
        result = []
        for message in fresh:
            kind = _MODEL_KINDS.get(type(message).__name__)
            if kind is not None:
                result.append(_recorded(kind, vars(message)))
        return result


class MotoDataJsonMail:
    """Reads moto's `/moto-api/data.json` (any moto server; its cost grows with moto's state)."""

    def __init__(self, aws_endpoint: str, *, timeout: float = 10.0) -> None:
        self._url = aws_endpoint.rstrip("/") + "/moto-api/data.json"
        self._timeout = timeout
        self._seen: set[str] = set()
        self.poll_cost_seconds = 0.0

    def new_messages(self) -> list[RecordedSend]:
        started = time.monotonic()
        with urllib.request.urlopen(self._url, timeout=self._timeout) as response:  # loopback only
            data = json.load(response)
        self.poll_cost_seconds = time.monotonic() - started
        result = []
        for model, kind in _MODEL_KINDS.items():
            for item in (data.get("ses") or {}).get(model, []):
                message_id = str(item.get("id"))
                if message_id not in self._seen:
                    self._seen.add(message_id)
                    result.append(_recorded(kind, item))
        return result


def moto_server_in_this_process(aws_endpoint: str) -> bool:
    """Whether a `ThreadedMotoServer` of this process serves `aws_endpoint`'s port."""
    try:
        from moto.server import ThreadedMotoServer
    except ImportError:
        return False
    port = urlsplit(aws_endpoint).port
    for candidate in gc.get_objects():
        # type(), not isinstance(): a dead weakref.proxy among the objects raises on any attribute
        if issubclass(type(candidate), ThreadedMotoServer):
            server = getattr(candidate, "_server", None)
            if server is not None and server.server_port == port:
                return True
    return False


def moto_sent_mail(aws_endpoint: str, *, account: str, region: str) -> SentMailSource:
    """The cheapest way to read the sends of the moto server at `aws_endpoint`."""
    if moto_server_in_this_process(aws_endpoint):
        return InProcessMotoMail(account=account, region=region)
    return MotoDataJsonMail(aws_endpoint)


# ---------------------------------------------------------------------------------------------
# The poller
# ---------------------------------------------------------------------------------------------


class SesFeedback(PeriodicWorker):
    """Turns new SES sends to simulator addresses into SES events on the default bus.

    `poll()` does one pass and returns the events it put; `start()` skips the sends moto already
    holds, installs `capture` on boto3's default session and polls every `interval_seconds` in a
    thread until `stop()`.
    """

    name = "ses"
    HOLD_SECONDS = 5.0

    def __init__(
        self,
        *,
        events: Any,
        sesv2: Any,
        source: SentMailSource,
        account: str,
        region: str,
        clock: Clock = time.time,
        interval_seconds: float = 0.5,
        event_types: Collection[str] | None = None,
        capture: SendCapture | None = None,
        event_bus: str = "default",
    ) -> None:
        self._events = events
        self._sesv2 = sesv2
        self._source = source
        self._account = account
        self._region = region
        super().__init__(interval_seconds, logger)
        self._clock = clock
        self._event_types = event_types
        self.capture = capture if capture is not None else SendCapture()
        self._bus = event_bus
        # Simulator sends moto recorded before their capture (tags, configuration set) was known,
        # with when they were first seen: retried at the next polls, for at most HOLD_SECONDS.
        self._held: list[tuple[RecordedSend, float]] = []

    def start(self) -> None:
        if self._thread is not None:
            return
        self.capture.install()
        try:  # only NEW sends: what moto holds already was sent before this stack (or run) began
            skipped = len(self._source.new_messages())
        except Exception as error:
            logger.warning("ses: could not read the sends moto already holds (%s)", error)
        else:
            if skipped:
                logger.info("ses: ignoring %d send(s) made before the start", skipped)
        self.start_thread()
        logger.info(
            "ses: mailbox simulator feedback every %.1fs from %s onto the %s bus",
            self._interval,
            type(self._source).__name__,
            self._bus,
        )

    def stop(self, timeout: float = 10.0) -> None:
        self.stop_thread(timeout)
        self.capture.uninstall()

    def work(self) -> object:
        return self.poll()

    def wait_seconds(self) -> float:
        # data.json serialises all of moto: never spend more than ~10% of the time on it.
        return max(self._interval, 10 * getattr(self._source, "poll_cost_seconds", 0.0))

    def _identity(self, source: str) -> tuple[str, str | None]:
        """(verified identity used, its default configuration set)."""
        address = _bare(source)
        for identity in (address, address.rpartition("@")[2]):
            try:
                response = self._sesv2.get_email_identity(EmailIdentity=identity)
            except Exception:
                continue
            return identity, response.get("ConfigurationSetName") or None
        return address, None

    def _mail(self, sent: RecordedSend, seen_at: datetime) -> SentMail:
        captured = self.capture.get(sent.message_id)
        common: dict[str, Any] = {"message_id": sent.message_id, "timestamp": seen_at}
        if captured is not None:
            common |= {
                "operation": captured.operation,
                "configuration_set": captured.configuration_set,
                "tags": captured.tags,
            }
        if sent.kind == "raw":
            mail = mail_from_raw(
                source=sent.source, destinations=sent.addresses(), raw_data=sent.raw_data or "", **common
            )
        else:
            if captured is None and sent.kind == "template":
                common["operation"] = "SendTemplatedEmail"
            mail = mail_from_simple(
                source=sent.source or "",
                destinations=sent.destinations if isinstance(sent.destinations, Mapping) else {},
                subject=sent.subject,
                body=sent.body,
                reply_to=captured.reply_to if captured else (),
                **common,
            )
        identity, default_set = self._identity(mail.source)
        return replace(mail, identity=identity, configuration_set=mail.configuration_set or default_set)

    def _ready(self) -> list[RecordedSend]:
        """The new simulator sends, and the held ones, whose capture is known or not coming.

        moto records a send while serving it; the sender's client remembers its tags only once it
        has the answer. A send read in between would lose its tags (Herald's ids: the feedback
        function would ignore its events), so it is held while any captured send is in flight.
        """
        seen = time.monotonic()
        candidates = self._held + [
            (sent, seen)
            for sent in self._source.new_messages()
            if any(simulator_scenario(a) for a in sent.addresses())
        ]
        self._held = []
        ready = []
        for sent, first_seen in candidates:
            if (
                self.capture.get(sent.message_id) is None
                and seen - first_seen < self.HOLD_SECONDS
                and self.capture.sending()
            ):
                self._held.append((sent, first_seen))
            else:
                ready.append(sent)
        return ready

    def poll(self) -> list[dict[str, Any]]:
        published: list[dict[str, Any]] = []
        for sent in self._ready():
            now = datetime.fromtimestamp(self._clock(), UTC)
            mail = self._mail(sent, now)
            if not mail.configuration_set:
                logger.info(
                    "ses: %s to %s was sent without a configuration set: SES publishes no events",
                    sent.message_id,
                    ", ".join(mail.destinations),
                )
                continue
            events = ses_events(
                mail, account=self._account, region=self._region, now=now, event_types=self._event_types
            )
            self._put(events)
            published.extend(events)
            logger.info(
                "ses: %s to %s (configuration set %s) -> %s",
                sent.message_id,
                ", ".join(a for a in mail.destinations if simulator_scenario(a)),
                mail.configuration_set,
                ", ".join(e["detail-type"] for e in events) or "no matching event types",
            )
        return published

    def _put(self, events: list[dict[str, Any]]) -> None:
        for start in range(0, len(events), 10):
            chunk = events[start : start + 10]
            response = self._events.put_events(
                Entries=[
                    {
                        "EventBusName": self._bus,
                        "Source": event["source"],
                        "DetailType": event["detail-type"],
                        "Detail": json.dumps(event["detail"]),
                        "Resources": event["resources"],
                        "Time": datetime.strptime(event["time"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC),
                    }
                    for event in chunk
                ]
            )
            if response.get("FailedEntryCount"):
                logger.error("ses: put_events rejected some events: %s", response.get("Entries"))
