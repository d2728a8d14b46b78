"""Configuration from the environment, validated once at cold start (fails loudly, not mid-request).

Each model is a `pydantic-settings` `BaseSettings` whose field aliases are the environment variable
names the template sets (docs/contracts.md); a missing or malformed variable raises
`ConfigurationError` naming it when the function's module is imported.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict, SettingsError

from herald.models import Channel


class ConfigurationError(RuntimeError):
    """A required environment variable is missing or malformed."""


class HeraldSettings(BaseSettings):
    """Base of every function's settings: read from the environment, immutable, extras ignored."""

    model_config = SettingsConfigDict(frozen=True, populate_by_name=True, extra="ignore", case_sensitive=True)


def load[T: HeraldSettings](model: type[T], environ: Mapping[str, str] | None = None) -> T:
    """`model` from the process environment (or from `environ` alone, for tests); raises
    ConfigurationError naming every variable that is missing or malformed."""
    try:
        if environ is None:
            return model()
        given = dict(environ)
        for name, field in model.model_fields.items():  # nested settings read the same mapping
            nested = field.annotation
            if isinstance(nested, type) and issubclass(nested, HeraldSettings) and name not in given:
                given[name] = nested.model_validate(dict(environ))
        return model.model_validate(given)
    except ValidationError as error:
        problems = ", ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '<settings>'}: {e['msg']}" for e in error.errors()
        )
        raise ConfigurationError(f"{model.__name__}: invalid or missing configuration: {problems}") from error
    except SettingsError as error:  # a complex value (JSON) that does not parse
        raise ConfigurationError(f"{model.__name__}: {error}") from error


DEFAULT_TEMPLATE_TTL_SECONDS = 300.0


class TemplateSettings(HeraldSettings):
    """Where templates come from: the packaged set, overridden from S3 when a bucket is set."""

    bucket: str = Field(default="", alias="TEMPLATE_BUCKET")
    prefix: str = Field(default="", alias="TEMPLATE_PREFIX")
    cache_ttl_seconds: float = Field(
        default=DEFAULT_TEMPLATE_TTL_SECONDS, alias="TEMPLATE_CACHE_TTL_SECONDS", ge=0
    )

    @field_validator("bucket", "prefix", mode="before")
    @classmethod
    def _strip(cls, raw: Any) -> Any:
        return raw.strip() if isinstance(raw, str) else raw

    @field_validator("cache_ttl_seconds", mode="before")
    @classmethod
    def _blank_is_default(cls, raw: Any) -> Any:
        return DEFAULT_TEMPLATE_TTL_SECONDS if isinstance(raw, str) and not raw.strip() else raw


class Tables(HeraldSettings):
    users: str = Field(alias="USERS_TABLE")
    presence: str = Field(alias="PRESENCE_TABLE")
    suppression: str = Field(alias="SUPPRESSION_TABLE")
    notifications: str = Field(alias="NOTIFICATIONS_TABLE")
    rate_counters: str = Field(alias="RATE_COUNTERS_TABLE")
    idempotency: str = Field(alias="IDEMPOTENCY_TABLE")


class ChannelQueues(HeraldSettings):
    email_url: str = Field(alias="EMAIL_QUEUE_URL")
    push_url: str = Field(alias="PUSH_QUEUE_URL")
    sms_url: str = Field(alias="SMS_QUEUE_URL")
    realtime_url: str = Field(alias="REALTIME_QUEUE_URL")
    webhook_url: str = Field(alias="WEBHOOK_QUEUE_URL")
    email_arn: str = Field(alias="EMAIL_QUEUE_ARN")
    push_arn: str = Field(alias="PUSH_QUEUE_ARN")
    sms_arn: str = Field(alias="SMS_QUEUE_ARN")
    realtime_arn: str = Field(alias="REALTIME_QUEUE_ARN")
    webhook_arn: str = Field(alias="WEBHOOK_QUEUE_ARN")

    def url(self, channel: Channel) -> str:
        return getattr(self, f"{channel.value}_url")

    def arn(self, channel: Channel) -> str:
        return getattr(self, f"{channel.value}_arn")


class RouterSettings(HeraldSettings):
    stage: str = Field(alias="STAGE")
    tables: Tables = Field(default_factory=Tables)
    queues: ChannelQueues = Field(default_factory=ChannelQueues)
    ingest_queue_url: str = Field(alias="INGEST_QUEUE_URL")
    ingest_queue_arn: str = Field(alias="INGEST_QUEUE_ARN")
    ingest_dlq_url: str = Field(alias="INGEST_DLQ_URL")
    broadcast_queue_url: str = Field(alias="BROADCAST_QUEUE_URL")  # a broadcast's recipients (decision 027)
    escalation_state_machine_arn: str = Field(alias="ESCALATION_STATE_MACHINE_ARN")
    scheduler_role_arn: str = Field(alias="SCHEDULER_ROLE_ARN")
    schedule_group: str = Field(alias="SCHEDULE_GROUP")
    rate_limits: dict[Channel, int] = Field(alias="RATE_LIMITS")
    fallback_delay_seconds: int = Field(default=300, alias="FALLBACK_DELAY_SECONDS", ge=1, le=86400)
    digest_delay_seconds: int = Field(default=86400, alias="DIGEST_DELAY_SECONDS", ge=1)
    presence_max_age_seconds: int = Field(default=21600, alias="PRESENCE_MAX_AGE_SECONDS", ge=1)
    # the record is the notification's idempotency: at least the 15 days a request can come back in
    notification_retention_days: int = Field(default=90, alias="NOTIFICATION_RETENTION_DAYS", ge=15)
    fanout_page_size: int = Field(default=100, alias="FANOUT_PAGE_SIZE", ge=1, le=1000)

    @field_validator("rate_limits", mode="before")
    @classmethod
    def _parse_json(cls, raw: Any) -> Any:
        return json.loads(raw) if isinstance(raw, str) else raw


class SchedulesSettings(HeraldSettings):
    """The schedules function (decision 028): where recurring schedules live and what they target."""

    group: str = Field(alias="RECURRING_SCHEDULE_GROUP", min_length=1)
    bus_arn: str = Field(alias="HERALD_BUS_ARN", min_length=1)
    role_arn: str = Field(alias="SCHEDULER_ROLE_ARN", min_length=1)


class DirectorySettings(HeraldSettings):
    """The directory function (`UserUpserted` / `UserDeleted` from the bus, decision 014)."""

    users_table: str = Field(alias="USERS_TABLE")
    dlq_url: str = Field(alias="DIRECTORY_DLQ_URL")
    tombstone_days: int = Field(default=30, alias="DIRECTORY_TOMBSTONE_DAYS", ge=1)
    tables: Tables = Field(default_factory=Tables)  # a `UserDeleted` erases the person (decision 017)


class ApiSettings(HeraldSettings):
    """The app-facing API function (decision 015)."""

    stage: str = Field(alias="STAGE")
    tables: Tables = Field(default_factory=Tables)
    notification_retention_days: int = Field(default=90, alias="NOTIFICATION_RETENTION_DAYS", ge=1)
    pusher_secret_arn: str = Field(alias="PUSHER_SECRET_ARN")
    presence_max_age_seconds: int = Field(default=21600, alias="PRESENCE_MAX_AGE_SECONDS", ge=1)
    # SendGrid's signed event webhook (decision 023): its verification key (`webhook_public_key`)
    # lives in the email sender's secret. Twilio's webhook has a function of its own (decision 035).
    sendgrid_secret_arn: str = Field(alias="SENDGRID_SECRET_ARN")
    # the HMAC key of the one-click unsubscribe links the email sender signs (decision 024)
    unsubscribe_secret_arn: str = Field(alias="UNSUBSCRIBE_SECRET_ARN")


class OperatorSettings(HeraldSettings):
    """The operator function: `/v1/admin/*`, manual sends and the console's reads (decision 038)."""

    tables: Tables = Field(default_factory=Tables)
    # the scope an operator's token must carry
    admin_scope: str = Field(default="herald/admin", alias="ADMIN_SCOPE", min_length=1)
    # an administrator's sends (herald.sends) go on this bus
    bus_name: str = Field(alias="HERALD_BUS_NAME", min_length=1)
    # who counts as online, as the router counts them (`Presence.online_at`)
    presence_max_age_seconds: int = Field(default=21600, alias="PRESENCE_MAX_AGE_SECONDS", ge=1)


class TwilioWebhookSettings(HeraldSettings):
    """The Twilio webhook function: status callbacks and inbound SMS (decisions 023, 035)."""

    tables: Tables = Field(default_factory=Tables)
    # the SMS sender's secret: its auth token verifies X-Twilio-Signature
    twilio_secret_arn: str = Field(alias="TWILIO_SECRET_ARN")
    # the answer to an inbound SMS HELP (TwiML <Message>)
    sms_help_text: str = Field(alias="SMS_HELP_TEXT", min_length=1, max_length=320)


class FeedbackSettings(HeraldSettings):
    """The feedback function: SES events from the feedback queue (decision 022)."""

    tables: Tables = Field(default_factory=Tables)
    dlq_url: str = Field(alias="FEEDBACK_DLQ_URL")
    # Herald's configuration set: events of another one are about mail Herald did not send.
    ses_configuration_set: str = Field(default="", alias="SES_CONFIGURATION_SET")
    soft_bounce_threshold: int = Field(default=3, alias="SOFT_BOUNCE_THRESHOLD", ge=1)
    soft_bounce_window_days: int = Field(default=7, alias="SOFT_BOUNCE_WINDOW_DAYS", ge=1, le=365)
