"""The unread digest (issue 10 item 6, decision 020): medium notifications still unread
`DigestDelaySeconds` after creation reach their person as ONE email listing them, at the person's
local daytime.

Finding them. The router writes `digest_day` (UTC date of the due time) and `digest_due_at` on a
medium notification it may email; the sparse `DigestPending` index holds only those, projecting just
what a run reads (`INDEX_ATTRIBUTES`, decision 033), so the senders' updates never rewrite it. A run
queries the partitions of today and the `lookback_days` before it (`digest_due_at <= now`, paged):
never a scan.

Who gets one now. Per person (profiles and read-all watermarks in one BatchGetItem): not read, not
archived, not acknowledged, not covered by read-all, type and category not muted now; the person
has an email address and email on; their local hour is in [`local_hour`, `local_end_hour`) and
they are not in quiet hours (otherwise the items wait for a later run); and their previous digest
of the local day is at least `min_interval_seconds` old. What can never be digested (read, muted,
email off...) leaves the index with `digest_skipped` saying why.

Once, even when runs overlap or crash. The digest is a notification record of its own (type
`unread_digest`, `inbox` false) with a deterministic id: person + local date + sequence, created
with a conditional put, so two runs meet on the same record. Items are claimed INTO it: one
TransactWriteItems per chunk removes `digest_day` from each item (only if it still has it and is
not read, archived or acknowledged) and appends the item to the digest's `digest_entries` (only
while the digest is open). An item is claimed at most once, and a claimed item is always listed.
The digest is then sealed (its `data` composed from the entries, conditional on their count) and
one reference email message is queued on the Email queue; the email sender's claim on the record
guarantees at most one email (and applies suppression). Until it is queued the digest record itself
carries `digest_day`/`digest_due_at`, so a run that crashed anywhere is finished by the next one.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from typing import Any, Literal, Protocol
from urllib.parse import quote

from aws_lambda_powertools import Logger
from botocore.exceptions import ClientError
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from herald.batch import problems
from herald.catalog import Catalog, CatalogEntry, UnknownNotificationType
from herald.dispatch import send_batches
from herald.inbox import INBOX_SK
from herald.messages import ChannelMessage
from herald.models import Category, Channel, Urgency
from herald.rendering import Renderer, TemplateRenderError
from herald.routing.decision import MANDATORY_CATEGORIES
from herald.routing.quiet_hours import in_quiet_hours
from herald.settings import HeraldSettings, Tables
from herald.stores.dynamo import batch_get, from_attributes, to_attributes
from herald.stores.keys import PROFILE_SK, user_pk
from herald.stores.notifications import NotificationRecord, stamp
from herald.stores.users import PersonErased, not_erased, profile_from_item, profile_key
from herald.users import Preferences, UserProfile

logger = Logger(child=True)

DIGEST_TYPE = "unread_digest"
DIGEST_ID_PREFIX = "dgs-"
DIGEST_INDEX = "DigestPending"
LEGACY_DIGEST_INDEX = "DigestDue"  # ALL projection; read only while a stack migrates (decision 033)
# What a run reads from each index item besides the keys (template.yaml's DigestPending projection,
# checked by the tests): what `NotificationRecord` requires, what `select` and the title need. None
# of it is written by the senders' claims and outcomes, so those never write the index.
INDEX_ATTRIBUTES = frozenset(
    {
        "event_id",
        "type",
        "category",
        "urgency",
        "locale",
        "data",
        "created_at",
        "status",
        "read_at",
        "archived_at",
        "acked_at",
    }
)
MAX_DIGESTS_PER_DAY = 96  # a run every 15 minutes, all day: far beyond any sensible interval
TRANSACTION_ITEMS = 100  # DynamoDB's limit: 99 claims + the digest's append
MAX_CANDIDATES_PER_RUN = 10_000  # the rest are found by the next run
DEADLINE_MARGIN_SECONDS = 20.0
MAX_CONFLICT_RETRIES = 5


class DigestSettings(HeraldSettings):
    """The digest function (template parameters DigestLocalHour, DigestMinIntervalSeconds,
    DigestSchedule, AppBaseUrl)."""

    tables: Tables = Field(default_factory=Tables)
    email_queue_url: str = Field(alias="EMAIL_QUEUE_URL")
    app_base_url: str = Field(alias="APP_BASE_URL", pattern=r"^https?://\S+$")
    local_hour: int = Field(default=9, alias="DIGEST_LOCAL_HOUR", ge=0, le=23)
    local_end_hour: int = Field(default=21, alias="DIGEST_LOCAL_END_HOUR", ge=1, le=24)
    min_interval_seconds: int = Field(default=43200, alias="DIGEST_MIN_INTERVAL_SECONDS", ge=0)
    lookback_days: int = Field(default=3, alias="DIGEST_LOOKBACK_DAYS", ge=0, le=14)
    max_items: int = Field(default=100, alias="DIGEST_MAX_ITEMS", ge=1, le=300)
    notification_retention_days: int = Field(default=90, alias="NOTIFICATION_RETENTION_DAYS", ge=1)
    index: Literal["DigestPending", "DigestDue"] = Field(default=DIGEST_INDEX, alias="DIGEST_INDEX")

    @model_validator(mode="after")
    def _window(self) -> DigestSettings:
        if self.local_hour >= self.local_end_hour:
            raise ValueError(
                f"DIGEST_LOCAL_HOUR ({self.local_hour}) must be before DIGEST_LOCAL_END_HOUR "
                f"({self.local_end_hour})"
            )
        return self


# -- pure rules ------------------------------------------------------------------------------------


class Skipped(StrEnum):
    """Why a notification leaves the digest index without being digested."""

    READ = "read"
    ARCHIVED = "archived"
    ACKNOWLEDGED = "acknowledged"
    READ_ALL = "read_all"
    MUTED = "muted"
    EMAIL_MUTED = "email_muted_for_category"
    NO_EMAIL = "no_email_address"
    EMAIL_OFF = "email_opted_out"
    DIGEST_MUTED = "digest_muted"


def utc_now() -> datetime:
    return datetime.now(UTC)


def due_days(now: datetime, lookback_days: int) -> list[str]:
    """The `digest_day` partitions one run reads: today (UTC) and the `lookback_days` before it,
    oldest first."""
    today = now.astimezone(UTC).date()
    return [(today - timedelta(days=n)).isoformat() for n in range(lookback_days, -1, -1)]


def due_at(record: NotificationRecord) -> datetime | None:
    if not record.digest_due_at:
        return None
    try:
        parsed = datetime.fromisoformat(record.digest_due_at)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def window_closed(now: datetime, profile: UserProfile, start_hour: int, end_hour: int) -> str | None:
    """Why a digest may not go to this person now (None: it may): outside [start_hour, end_hour)
    of their local day, or in their quiet hours."""
    local = now.astimezone(profile.zone)
    if not start_hour <= local.hour < end_hour:
        return f"local time {local:%H:%M} is outside {start_hour:02d}:00-{end_hour:02d}:00"
    if profile.quiet_hours is not None and in_quiet_hours(
        local.time().replace(tzinfo=None), profile.quiet_hours
    ):
        return f"local time {local:%H:%M} is in the person's quiet hours"
    return None


def muted(preferences: Preferences, type_name: str, category: Category) -> bool:
    """The person mutes this type, or its category (security and system cannot be muted)."""
    if type_name in preferences.muted_types:
        return True
    return category in preferences.muted_categories and category not in MANDATORY_CATEGORIES


def email_blocked(profile: UserProfile, digest: CatalogEntry) -> Skipped | None:
    """Why no digest email may go to this person at all (None: it may)."""
    if not profile.email:
        return Skipped.NO_EMAIL
    if not profile.preferences.channel_enabled(Channel.EMAIL):
        return Skipped.EMAIL_OFF
    if muted(profile.preferences, digest.name, digest.category):
        return Skipped.DIGEST_MUTED
    if digest.category not in MANDATORY_CATEGORIES and profile.preferences.channel_muted_for(
        digest.category, Channel.EMAIL
    ):
        return Skipped.DIGEST_MUTED  # email turned off for the digest's own category
    return None


def select(
    records: Iterable[NotificationRecord], *, now: datetime, watermark: str | None, preferences: Preferences
) -> tuple[list[NotificationRecord], list[tuple[NotificationRecord, Skipped]]]:
    """Of one person's indexed notifications: those to digest (due and unread, oldest first) and
    those that never will be, with why. One not due yet is in neither: it waits."""
    keep: list[NotificationRecord] = []
    skip: list[tuple[NotificationRecord, Skipped]] = []
    for record in records:
        due = due_at(record)
        if due is None or due > now:
            continue
        if record.read_at is not None:
            skip.append((record, Skipped.READ))
        elif record.archived_at is not None:
            skip.append((record, Skipped.ARCHIVED))
        elif record.acked_at is not None:
            skip.append((record, Skipped.ACKNOWLEDGED))
        elif watermark is not None and stamp(record.created_at) <= watermark:
            skip.append((record, Skipped.READ_ALL))
        elif muted(preferences, record.type, record.category):
            skip.append((record, Skipped.MUTED))
        elif record.category not in MANDATORY_CATEGORIES and preferences.channel_muted_for(
            record.category, Channel.EMAIL
        ):
            skip.append((record, Skipped.EMAIL_MUTED))  # the person wants this category, not by email
        else:
            keep.append(record)
    keep.sort(key=lambda r: (r.created_at, r.notification_id))
    return keep, skip


def digest_id(user_id: str, local_date: date, sequence: int) -> str:
    """Deterministic: two runs digesting the same person on the same local day meet on one record."""
    key = f"{user_id}#{local_date.isoformat()}#{sequence}"
    return DIGEST_ID_PREFIX + hashlib.sha256(key.encode()).hexdigest()[:32]


def notification_url(app_base_url: str, notification_id: str) -> str:
    return f"{app_base_url.rstrip('/')}/notifications/{quote(notification_id, safe='')}"


def inbox_url(app_base_url: str) -> str:
    return f"{app_base_url.rstrip('/')}/notifications"


class DigestEntry(BaseModel):
    """One notification as its digest lists it."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    notification_id: str
    type: str
    title: str
    url: str
    created_at: str


def digest_data(entries: Sequence[DigestEntry], app_base_url: str) -> dict[str, Any]:
    """The digest record's `data`, what its email templates see: newest first."""
    ordered = sorted(entries, key=lambda e: (e.created_at, e.notification_id), reverse=True)
    return {
        "count": len(ordered),
        "items": [{"title": e.title, "url": e.url} for e in ordered],
        "inbox_url": inbox_url(app_base_url),
    }


# -- the run ---------------------------------------------------------------------------------------


class DigestStatus(StrEnum):
    COLLECTING = "collecting"  # open: items are being claimed into it
    SEALED = "sealed"  # its list is final; its email message may not be queued yet
    QUEUED = "queued"  # its email message is on the Email queue (the sender takes it from there)
    EMPTY = "empty"  # sealed with nothing claimed: no email
    CANCELLED = "cancelled"  # the person turned email off before it was queued: no email


COUNTED_STATUSES = frozenset({DigestStatus.SEALED.value, DigestStatus.QUEUED.value})


class MetricsSink(Protocol):
    def add_metric(self, name: str, unit: Any, value: float, *args: Any, **kwargs: Any) -> None: ...


@dataclass
class DigestReport:
    """What one run did (the handler's return value and its log line)."""

    candidates: int = 0
    people: int = 0
    digests_queued: list[str] = field(default_factory=list)
    notifications_digested: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    waiting: dict[str, str] = field(default_factory=dict)  # user id -> why not now
    failed: list[str] = field(default_factory=list)  # user ids whose digest raised
    unfinished: bool = False  # stopped before the deadline: the next run continues

    def as_dict(self) -> dict[str, Any]:
        return {
            "candidates": self.candidates,
            "people": self.people,
            "digests_queued": len(self.digests_queued),
            "notifications_digested": self.notifications_digested,
            "skipped": dict(self.skipped),
            "waiting": len(self.waiting),
            "failed": len(self.failed),
            "unfinished": self.unfinished,
        }


class DigestRunError(RuntimeError):
    """The run served everyone it could, but some people's digests raised (logged each)."""


@dataclass(frozen=True)
class Person:
    profile: UserProfile | None
    watermark: str | None
    problem: str | None = None


class DigestService:
    def __init__(
        self,
        *,
        dynamodb: Any,
        sqs: Any,
        settings: DigestSettings,
        catalog: Catalog,
        renderer: Renderer,
        metrics: MetricsSink | None = None,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self._dynamodb = dynamodb
        self._sqs = sqs
        self._settings = settings
        self._catalog = catalog
        self._renderer = renderer
        self._metrics = metrics
        self._clock = clock
        self._notifications = settings.tables.notifications
        self._users = settings.tables.users
        self._entry = catalog.entry(DIGEST_TYPE)  # fails at cold start if the catalog lacks it

    # -- one run --------------------------------------------------------------------------------

    def run(self, time_left: Callable[[], float] | None = None) -> DigestReport:
        """Digest everything due now. `time_left` (seconds): the run stops taking new people when
        the invocation is about to end; the next run continues (nothing is half done)."""
        now = self._clock()
        report = DigestReport()
        by_person: dict[str, list[NotificationRecord]] = {}
        open_digests: dict[str, list[str]] = {}
        for item in self._due_items(now):
            report.candidates += 1
            user_id, notification_id = str(item.get("user_id", "")), str(item.get("notification_id", ""))
            if item.get("type") == DIGEST_TYPE or notification_id.startswith(DIGEST_ID_PREFIX):
                open_digests.setdefault(user_id, []).append(notification_id)
                continue
            try:
                by_person.setdefault(user_id, []).append(NotificationRecord.model_validate(item))
            except ValidationError as error:
                logger.warning(
                    "malformed notification in the digest index: ignored",
                    extra={
                        "user_id": user_id,
                        "notification_id": notification_id,
                        "problems": problems(error),
                    },
                )
        user_ids = sorted(set(by_person) | set(open_digests))
        people = self._people(user_ids)
        for user_id in user_ids:
            if time_left is not None and time_left() < DEADLINE_MARGIN_SECONDS:
                report.unfinished = True
                logger.warning("digest run stopped near its deadline: the next run continues")
                break
            report.people += 1
            try:
                self._person(
                    user_id,
                    by_person.get(user_id, []),
                    open_digests.get(user_id, []),
                    people[user_id],
                    now,
                    report,
                )
            except Exception:  # one person's trouble must not keep the others' digests back
                logger.exception(
                    "digest failed for one person: the next run tries again", extra={"user_id": user_id}
                )
                report.failed.append(user_id)
                self._count("DigestErrors", 1)
        logger.info("digest run", extra=report.as_dict())
        if report.failed:
            # the invocation fails (its Errors metric and alarm) once everyone else was served
            raise DigestRunError(
                f"the digest failed for {len(report.failed)} person(s); the next run retries"
            )
        return report

    def _due_items(self, now: datetime) -> Iterable[dict[str, Any]]:
        """Every item of the index due by `now` in the lookback's partitions (paged queries)."""
        seen = 0
        bound = now.astimezone(UTC).isoformat()
        for day in due_days(now, self._settings.lookback_days):
            params: dict[str, Any] = {
                "TableName": self._notifications,
                "IndexName": self._settings.index,
                "KeyConditionExpression": "digest_day = :day AND digest_due_at <= :now",
                "ExpressionAttributeValues": to_attributes({":day": day, ":now": bound}),
            }
            while True:
                response = self._dynamodb.query(**params)
                for item in response.get("Items", []):
                    seen += 1
                    yield from_attributes(item)
                if seen >= MAX_CANDIDATES_PER_RUN:
                    logger.warning("digest run read its maximum of candidates: the next run continues")
                    return
                if not response.get("LastEvaluatedKey"):
                    break
                params["ExclusiveStartKey"] = response["LastEvaluatedKey"]

    def _people(self, user_ids: Sequence[str]) -> dict[str, Person]:
        """Profiles and read-all watermarks of everyone at once (one logical BatchGetItem)."""
        if not user_ids:
            return {}
        keys = [profile_key(u) for u in user_ids] + [{"pk": user_pk(u), "sk": INBOX_SK} for u in user_ids]
        found = batch_get(self._dynamodb, {self._users: keys}, consistent=True)[self._users]
        profiles: dict[str, UserProfile] = {}
        broken: dict[str, str] = {}
        watermarks: dict[str, str] = {}
        for item in found:
            user_id = str(item["pk"]).removeprefix("USER#")
            if item.get("sk") == INBOX_SK:
                if item.get("read_all_at"):
                    watermarks[user_id] = str(item["read_all_at"])
            elif item.get("sk") == PROFILE_SK:
                try:
                    profiles[user_id] = profile_from_item(item)
                except ValidationError as error:
                    broken[user_id] = problems(error)
        return {u: Person(profiles.get(u), watermarks.get(u), broken.get(u)) for u in user_ids}

    # -- one person -----------------------------------------------------------------------------

    def _person(
        self,
        user_id: str,
        records: list[NotificationRecord],
        open_ids: list[str],
        person: Person,
        now: datetime,
        report: DigestReport,
    ) -> None:
        profile = person.profile
        if profile is None:
            logger.warning(
                "no usable profile: the person's notifications wait",
                extra={"user_id": user_id, "problems": person.problem},
            )
            report.waiting[user_id] = person.problem or "no profile"
            return
        blocked = email_blocked(profile, self._entry)
        if blocked is not None:
            for record in records:
                self._leave_index(record, blocked, report)
            for notification_id in open_ids:
                self._cancel(user_id, notification_id, blocked, now)
            return
        keep, skip = select(records, now=now, watermark=person.watermark, preferences=profile.preferences)
        for record, why in skip:
            self._leave_index(record, why, report)
        closed = window_closed(now, profile, self._settings.local_hour, self._settings.local_end_hour)
        if closed is not None:
            if keep or open_ids:
                report.waiting[user_id] = closed
            return

        # A digest a crashed or concurrent run started: join it while open, finish it in any case.
        for notification_id in sorted(open_ids):
            digest = self._get(user_id, notification_id)
            if digest is None or digest.get("queued_at") or digest.get("status") == DigestStatus.CANCELLED:
                continue
            if keep and not digest.get("sealed_at"):
                keep = self._fill(digest, keep, profile, now, report)
            self._finish(user_id, notification_id, now, report)
        if not keep:
            return
        try:
            digest = self._current_digest(profile, now)
        except PersonErased:
            logger.info("the person was erased meanwhile: no digest", extra={"user_id": user_id})
            return
        if digest is None:
            report.waiting[user_id] = "a digest went out less than the minimum interval ago"
            return
        self._fill(digest, keep, profile, now, report)
        self._finish(user_id, str(digest["notification_id"]), now, report)

    def _current_digest(self, profile: UserProfile, now: datetime) -> dict[str, Any] | None:
        """Today's open digest of this person (a concurrent run's), or a new one; None when their
        previous digest of the local day is more recent than the minimum interval."""
        local_date = now.astimezone(profile.zone).date()
        last: datetime | None = None
        sequence = 0
        while sequence < MAX_DIGESTS_PER_DAY:
            notification_id = digest_id(profile.user_id, local_date, sequence)
            digest = self._get(profile.user_id, notification_id)
            if digest is None:
                interval = timedelta(seconds=self._settings.min_interval_seconds)
                if last is not None and now - last < interval:
                    return None
                created = self._create(profile, notification_id, local_date, sequence, now)
                if created is not None:
                    return created
                continue  # another run created it a moment ago: look at it again
            if not digest.get("sealed_at"):
                return digest
            if digest.get("status") in COUNTED_STATUSES:
                last = datetime.fromisoformat(str(digest["created_at"]))
            sequence += 1
        logger.warning("the person had the most digests a day allows", extra={"user_id": profile.user_id})
        return None

    def _create(
        self, profile: UserProfile, notification_id: str, local_date: date, sequence: int, now: datetime
    ) -> dict[str, Any] | None:
        """The digest record, open; None when it exists already."""
        assert profile.email is not None
        record = NotificationRecord(
            user_id=profile.user_id,
            notification_id=notification_id,
            event_id=notification_id,
            type=DIGEST_TYPE,
            category=self._entry.category,
            urgency=self._entry.urgency,
            locale=profile.locale,
            created_at=now,
            status=DigestStatus.COLLECTING.value,
            plan=[{"channel": Channel.EMAIL.value, "to": profile.email}],
            inbox=False,
            expires_at=int((now + timedelta(days=self._settings.notification_retention_days)).timestamp()),
            # in the index until its email is queued: a run that crashes is finished by the next one
            **NotificationRecord.digest_fields(now.astimezone(UTC)),
        )
        item = {
            **record.model_dump(mode="json", exclude_none=True),
            "digest_local_date": local_date.isoformat(),
            "digest_sequence": sequence,
            "digest_entries": [],
        }
        try:
            self._dynamodb.transact_write_items(
                TransactItems=[
                    not_erased(self._users, profile.user_id),  # never write for an erased person (017)
                    {
                        "Put": {
                            "TableName": self._notifications,
                            "Item": to_attributes(item),
                            "ConditionExpression": "attribute_not_exists(notification_id)",
                        }
                    },
                ]
            )
        except ClientError as error:
            if error.response["Error"]["Code"] != "TransactionCanceledException":
                raise
            reasons = [r.get("Code") for r in error.response.get("CancellationReasons", [])]
            if reasons and reasons[0] == "ConditionalCheckFailed":
                raise PersonErased(f"user {profile.user_id} is erased") from None
            if len(reasons) > 1 and reasons[1] == "ConditionalCheckFailed":
                return None
            raise
        logger.info("digest started", extra={"user_id": profile.user_id, "notification_id": notification_id})
        return item

    def _fill(
        self,
        digest: Mapping[str, Any],
        records: list[NotificationRecord],
        profile: UserProfile,
        now: datetime,
        report: DigestReport,
    ) -> list[NotificationRecord]:
        """Claim `records` into the open `digest` (up to its room); returns those not claimed
        because the digest was full or sealed meanwhile (they wait for the next digest)."""
        room = self._settings.max_items - len(digest.get("digest_entries") or [])
        pending, rest = records[: max(room, 0)], records[max(room, 0) :]
        notification_id = str(digest["notification_id"])
        entries = {r.notification_id: self._entry_for(r, profile.locale) for r in pending}
        claimed = 0
        conflicts = 0
        while pending:
            chunk = pending[: TRANSACTION_ITEMS - 1]
            try:
                self._dynamodb.transact_write_items(
                    TransactItems=[self._claim(r, notification_id, now) for r in chunk]
                    + [
                        self._append(
                            profile.user_id, notification_id, [entries[r.notification_id] for r in chunk], now
                        )
                    ]
                )
            except ClientError as error:
                if error.response["Error"]["Code"] != "TransactionCanceledException":
                    raise
                reasons = [r.get("Code") for r in error.response.get("CancellationReasons", [])]
                if len(reasons) > len(chunk) and reasons[len(chunk)] == "ConditionalCheckFailed":
                    return pending + rest  # sealed or filled by another run: these wait for the next digest
                gone = {
                    chunk[i].notification_id
                    for i, code in enumerate(reasons[: len(chunk)])
                    if code == "ConditionalCheckFailed"
                }
                if gone:  # read, archived, acknowledged or claimed since the index showed them
                    pending = [r for r in pending if r.notification_id not in gone]
                    continue
                if "TransactionConflict" in reasons and conflicts < MAX_CONFLICT_RETRIES:
                    conflicts += 1
                    time.sleep(0.05 * 2**conflicts)
                    continue
                raise
            claimed += len(chunk)
            pending = pending[len(chunk) :]
        if claimed:
            report.notifications_digested += claimed
            self._count("NotificationsDigested", claimed)
        return rest

    def _entry_for(self, record: NotificationRecord, locale: str) -> DigestEntry:
        return DigestEntry(
            notification_id=record.notification_id,
            type=record.type,
            title=self._title(record, locale),
            url=notification_url(self._settings.app_base_url, record.notification_id),
            created_at=stamp(record.created_at),
        )

    def _title(self, record: NotificationRecord, locale: str) -> str:
        """The notification's in-app title in the digest's locale (the inbox shows the same)."""
        try:
            rendered = self._renderer.render(
                record.type,
                Channel.REALTIME,
                locale,
                record.data,
                {"notification_id": record.notification_id, "event_id": record.event_id},
            )
            if rendered.title:
                return str(rendered.title)
        except (TemplateRenderError, UnknownNotificationType) as error:
            logger.warning(
                "in-app title not rendered: the digest lists the type's description",
                extra={"notification_id": record.notification_id, "error": str(error)[:300]},
            )
        entry = self._catalog.types.get(record.type)
        return entry.description if entry else record.type

    def _claim(self, record: NotificationRecord, digest: str, now: datetime) -> dict[str, Any]:
        return {
            "Update": {
                "TableName": self._notifications,
                "Key": to_attributes({"user_id": record.user_id, "notification_id": record.notification_id}),
                "UpdateExpression": "REMOVE digest_day, digest_due_at "
                "SET digested_in = :digest, digested_at = :now",
                "ConditionExpression": "attribute_exists(digest_day) AND attribute_not_exists(read_at) "
                "AND attribute_not_exists(archived_at) AND attribute_not_exists(acked_at)",
                "ExpressionAttributeValues": to_attributes({":digest": digest, ":now": stamp(now)}),
            }
        }

    def _append(self, user_id: str, digest: str, entries: list[DigestEntry], now: datetime) -> dict[str, Any]:
        return {
            "Update": {
                "TableName": self._notifications,
                "Key": to_attributes({"user_id": user_id, "notification_id": digest}),
                "UpdateExpression": "SET digest_entries = list_append(digest_entries, :entries), "
                "updated_at = :now",
                # open, and room for these (a concurrent run's appends count too)
                "ConditionExpression": "attribute_exists(digest_entries) AND attribute_not_exists(sealed_at) "
                "AND size(digest_entries) <= :room",
                "ExpressionAttributeValues": to_attributes(
                    {
                        ":entries": [e.model_dump() for e in entries],
                        ":now": stamp(now),
                        ":room": self._settings.max_items - len(entries),
                    }
                ),
            }
        }

    # -- seal and queue -------------------------------------------------------------------------

    def _finish(self, user_id: str, notification_id: str, now: datetime, report: DigestReport) -> None:
        digest = self._seal(user_id, notification_id, now)
        if digest is None or digest.get("status") != DigestStatus.SEALED:
            return
        if self._queue(digest, now):
            report.digests_queued.append(notification_id)
            self._count("DigestsSent", 1)

    def _seal(self, user_id: str, notification_id: str, now: datetime) -> dict[str, Any] | None:
        """Freeze the digest's list and compose its `data` (the count of entries must not have
        changed since we read them); an empty one is sealed `empty` and leaves the index."""
        for _ in range(MAX_CONFLICT_RETRIES):
            digest = self._get(user_id, notification_id)
            if digest is None or digest.get("sealed_at"):
                return digest
            entries = [DigestEntry.model_validate(e) for e in digest.get("digest_entries") or []]
            values: dict[str, Any] = {":now": stamp(now), ":n": len(entries)}
            if entries:
                expression = "SET sealed_at = :now, #status = :sealed, #data = :data"
                values |= {
                    ":sealed": DigestStatus.SEALED.value,
                    ":data": digest_data(entries, self._settings.app_base_url),
                }
            else:
                expression = "SET sealed_at = :now, #status = :empty REMOVE digest_day, digest_due_at"
                values[":empty"] = DigestStatus.EMPTY.value
            try:
                response = self._dynamodb.update_item(
                    TableName=self._notifications,
                    Key=to_attributes({"user_id": user_id, "notification_id": notification_id}),
                    UpdateExpression=expression,
                    ConditionExpression="attribute_exists(notification_id) "
                    "AND attribute_not_exists(sealed_at) AND size(digest_entries) = :n",
                    ExpressionAttributeNames={"#status": "status", **({"#data": "data"} if entries else {})},
                    ExpressionAttributeValues=to_attributes(values),
                    ReturnValues="ALL_NEW",
                )
            except ClientError as error:
                if error.response["Error"]["Code"] != "ConditionalCheckFailedException":
                    raise
                continue  # another run appended (or sealed) meanwhile: look again
            return from_attributes(response["Attributes"])
        raise RuntimeError(f"digest {notification_id} keeps changing: not sealed (the next run seals it)")

    def _queue(self, digest: Mapping[str, Any], now: datetime) -> bool:
        """One reference email message for the sealed digest, then the digest leaves the index.
        True when this run marked it queued (a repeat after a crash queues a duplicate message,
        which the email sender's claim turns into a no-op)."""
        if digest.get("queued_at"):
            return False
        message = ChannelMessage(
            notification_id=str(digest["notification_id"]),
            event_id=str(digest["event_id"]),
            user_id=str(digest["user_id"]),
            type=DIGEST_TYPE,
            channel=Channel.EMAIL,
            urgency=Urgency(str(digest["urgency"])),
            category=Category(str(digest["category"])),
            locale=str(digest["locale"]),
        )
        send_batches(self._sqs, self._settings.email_queue_url, [(message.queue_body(), 0)])
        try:
            self._dynamodb.update_item(
                TableName=self._notifications,
                Key=to_attributes({"user_id": message.user_id, "notification_id": message.notification_id}),
                UpdateExpression="SET queued_at = :now, #status = :queued REMOVE digest_day, digest_due_at",
                ConditionExpression="attribute_exists(notification_id) AND attribute_not_exists(queued_at)",
                ExpressionAttributeNames={"#status": "status"},
                ExpressionAttributeValues=to_attributes(
                    {":now": stamp(now), ":queued": DigestStatus.QUEUED.value}
                ),
            )
        except ClientError as error:
            if error.response["Error"]["Code"] == "ConditionalCheckFailedException":
                return False  # a concurrent run queued it too: one email all the same
            raise
        logger.info(
            "digest queued",
            extra={
                "user_id": message.user_id,
                "notification_id": message.notification_id,
                "count": (digest.get("data") or {}).get("count"),
            },
        )
        return True

    # -- index hygiene --------------------------------------------------------------------------

    def _leave_index(self, record: NotificationRecord, why: Skipped, report: DigestReport) -> None:
        """A notification that will never be digested leaves the index (it would be read again by
        every run until the lookback passes it)."""
        try:
            self._dynamodb.update_item(
                TableName=self._notifications,
                Key=to_attributes({"user_id": record.user_id, "notification_id": record.notification_id}),
                UpdateExpression="REMOVE digest_day, digest_due_at SET digest_skipped = :why",
                ConditionExpression="attribute_exists(digest_day)",
                ExpressionAttributeValues=to_attributes({":why": why.value}),
            )
        except ClientError as error:
            if error.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise
            return  # claimed or skipped by another run meanwhile
        report.skipped[why.value] = report.skipped.get(why.value, 0) + 1

    def _cancel(self, user_id: str, notification_id: str, why: Skipped, now: datetime) -> None:
        """An unqueued digest of a person who turned email off (or lost their address) since: no email."""
        try:
            self._dynamodb.update_item(
                TableName=self._notifications,
                Key=to_attributes({"user_id": user_id, "notification_id": notification_id}),
                UpdateExpression="SET sealed_at = if_not_exists(sealed_at, :now), #status = :cancelled, "
                "digest_skipped = :why REMOVE digest_day, digest_due_at",
                ConditionExpression="attribute_exists(notification_id) AND attribute_not_exists(queued_at)",
                ExpressionAttributeNames={"#status": "status"},
                ExpressionAttributeValues=to_attributes(
                    {":now": stamp(now), ":cancelled": DigestStatus.CANCELLED.value, ":why": why.value}
                ),
            )
        except ClientError as error:
            if error.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise

    # -- helpers --------------------------------------------------------------------------------

    def _get(self, user_id: str, notification_id: str) -> dict[str, Any] | None:
        item = self._dynamodb.get_item(
            TableName=self._notifications,
            Key=to_attributes({"user_id": user_id, "notification_id": notification_id}),
            ConsistentRead=True,
        ).get("Item")
        return from_attributes(item) if item else None

    def _count(self, name: str, value: int) -> None:
        if self._metrics is not None:
            self._metrics.add_metric(name=name, unit="Count", value=value)
