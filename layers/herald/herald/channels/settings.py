"""Configuration of the channel senders, validated once at cold start (docs/contracts.md).

Every sender reads the shared tables and its own queue URL (for visibility backoff); each channel
adds its provider's settings. Loaded with `herald.settings.load`: a missing or
malformed variable raises `ConfigurationError` at import time of the function, not halfway
through a batch.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from herald.channels.outage import (
    SQS_MAX_VISIBILITY_SECONDS,
    TOLERANCE_RANGE_SECONDS,
    template_max_receive_count,
)
from herald.settings import HeraldSettings


class SenderSettings(HeraldSettings):
    stage: str = Field(alias="STAGE")
    users_table: str = Field(alias="USERS_TABLE")
    suppression_table: str = Field(alias="SUPPRESSION_TABLE")
    notifications_table: str = Field(alias="NOTIFICATIONS_TABLE")
    # Retry-later backoff (SQS visibility): full jitter over base * 2^(failures - 1), capped at the
    # SQS maximum visibility, budgeted in time (herald.channels.outage, decision 010).
    retry_base_seconds: float = Field(default=20.0, alias="RETRY_BASE_SECONDS", gt=0, le=3600)
    retry_max_seconds: int = Field(
        default=SQS_MAX_VISIBILITY_SECONDS, alias="RETRY_MAX_SECONDS", ge=1, le=SQS_MAX_VISIBILITY_SECONDS
    )
    provider_outage_tolerance_seconds: int = Field(
        default=3600,
        alias="PROVIDER_OUTAGE_TOLERANCE_SECONDS",
        ge=TOLERANCE_RANGE_SECONDS[0],
        le=TOLERANCE_RANGE_SECONDS[1],
    )
    # The channel queues' RedrivePolicy maxReceiveCount (the template passes the same number).
    max_receive_count: int = Field(
        default_factory=template_max_receive_count, alias="MAX_RECEIVE_COUNT", ge=1, le=1000
    )
    notification_retention_days: int = Field(default=90, alias="NOTIFICATION_RETENTION_DAYS", ge=1)
    secrets_max_age_seconds: int = Field(default=300, alias="SECRETS_MAX_AGE_SECONDS", ge=0)
    provider_timeout_seconds: float = Field(default=10.0, alias="PROVIDER_TIMEOUT_SECONDS", gt=0, le=60)

    @property
    def queue_url(self) -> str:
        raise NotImplementedError

    @property
    def dead_letter_queue_url(self) -> str:
        raise NotImplementedError


def _blank_is_none(value: Any) -> Any:
    return None if isinstance(value, str) and not value.strip() else value


class EmailSenderSettings(SenderSettings):
    email_queue_url: str = Field(alias="EMAIL_QUEUE_URL")
    email_dlq_url: str = Field(alias="EMAIL_DLQ_URL")
    email_provider: Literal["ses", "sendgrid"] = Field(default="ses", alias="EMAIL_PROVIDER")
    email_failover: bool = Field(default=False, alias="EMAIL_FAILOVER")
    from_address: str = Field(alias="EMAIL_FROM", min_length=3)
    reply_to: str | None = Field(default=None, alias="EMAIL_REPLY_TO")
    ses_configuration_set: str | None = Field(default=None, alias="SES_CONFIGURATION_SET")
    sendgrid_secret_arn: str | None = Field(default=None, alias="SENDGRID_SECRET_ARN")
    unsubscribe_secret_arn: str = Field(alias="UNSUBSCRIBE_SECRET_ARN")
    api_base_url: str = Field(alias="API_BASE_URL", pattern=r"^https?://")
    unsubscribe_mailto: str | None = Field(default=None, alias="UNSUBSCRIBE_MAILTO")
    unsubscribe_token_days: int = Field(default=180, alias="UNSUBSCRIBE_TOKEN_DAYS", ge=1, le=3650)

    blanks_to_none = field_validator(
        "reply_to", "ses_configuration_set", "sendgrid_secret_arn", "unsubscribe_mailto", mode="before"
    )(_blank_is_none)

    @model_validator(mode="after")
    def _provider_configured(self) -> EmailSenderSettings:
        if self.email_provider == "sendgrid" and not self.sendgrid_secret_arn:
            raise ValueError("EMAIL_PROVIDER=sendgrid needs SENDGRID_SECRET_ARN")
        return self

    @property
    def queue_url(self) -> str:
        return self.email_queue_url

    @property
    def dead_letter_queue_url(self) -> str:
        return self.email_dlq_url

    @property
    def failover_active(self) -> bool:
        """Failover needs both providers: SES (IAM, always there) and SendGrid (its secret)."""
        return self.email_failover and bool(self.sendgrid_secret_arn)


class PushSenderSettings(SenderSettings):
    push_queue_url: str = Field(alias="PUSH_QUEUE_URL")
    push_dlq_url: str = Field(alias="PUSH_DLQ_URL")
    fcm_secret_arn: str = Field(alias="FCM_SECRET_ARN")

    @property
    def queue_url(self) -> str:
        return self.push_queue_url

    @property
    def dead_letter_queue_url(self) -> str:
        return self.push_dlq_url


class SmsSenderSettings(SenderSettings):
    sms_queue_url: str = Field(alias="SMS_QUEUE_URL")
    sms_dlq_url: str = Field(alias="SMS_DLQ_URL")
    twilio_secret_arn: str = Field(alias="TWILIO_SECRET_ARN")
    status_callback_url: str | None = Field(default=None, alias="TWILIO_STATUS_CALLBACK_URL")

    blanks_to_none = field_validator("status_callback_url", mode="before")(_blank_is_none)

    @property
    def queue_url(self) -> str:
        return self.sms_queue_url

    @property
    def dead_letter_queue_url(self) -> str:
        return self.sms_dlq_url


class RealtimeSenderSettings(SenderSettings):
    realtime_queue_url: str = Field(alias="REALTIME_QUEUE_URL")
    realtime_dlq_url: str = Field(alias="REALTIME_DLQ_URL")
    pusher_secret_arn: str = Field(alias="PUSHER_SECRET_ARN")
    # The occupancy Herald keeps from Pusher's webhooks (decides whether to trigger at all), and
    # how long an "occupied" stays believable without a newer webhook (the router's same bound).
    presence_table: str = Field(alias="PRESENCE_TABLE")
    presence_max_age_seconds: int = Field(default=21600, alias="PRESENCE_MAX_AGE_SECONDS", ge=1)

    @property
    def queue_url(self) -> str:
        return self.realtime_queue_url

    @property
    def dead_letter_queue_url(self) -> str:
        return self.realtime_dlq_url


class WebhookSenderSettings(SenderSettings):
    webhook_queue_url: str = Field(alias="WEBHOOK_QUEUE_URL")
    webhook_dlq_url: str = Field(alias="WEBHOOK_DLQ_URL")
    webhook_secret_prefix: str = Field(alias="WEBHOOK_SECRET_PREFIX", min_length=1)
    webhook_timeout_seconds: float = Field(default=10.0, alias="WEBHOOK_TIMEOUT_SECONDS", gt=0, le=50)
    # Local stack only (its provisioner sets it; template.yaml never does): loopback receivers,
    # over http too. Everywhere else a webhook goes to a public https address (decision 009).
    webhook_allow_loopback: bool = Field(default=False, alias="WEBHOOK_ALLOW_LOOPBACK")

    @property
    def queue_url(self) -> str:
        return self.webhook_queue_url

    @property
    def dead_letter_queue_url(self) -> str:
        return self.webhook_dlq_url
