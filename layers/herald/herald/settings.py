"""Configuration from the environment, validated once at cold start (fails loudly, not mid-request)."""

from __future__ import annotations

import json
import os
from functools import cache
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from herald.models import Channel


class ConfigurationError(RuntimeError):
    """A required environment variable is missing or malformed."""


class Tables(BaseModel):
    model_config = ConfigDict(frozen=True)

    users: str = Field(alias="USERS_TABLE")
    presence: str = Field(alias="PRESENCE_TABLE")
    suppression: str = Field(alias="SUPPRESSION_TABLE")
    notifications: str = Field(alias="NOTIFICATIONS_TABLE")
    rate_counters: str = Field(alias="RATE_COUNTERS_TABLE")
    idempotency: str = Field(alias="IDEMPOTENCY_TABLE")


class ChannelQueues(BaseModel):
    model_config = ConfigDict(frozen=True)

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


class RouterSettings(BaseModel):
    model_config = ConfigDict(frozen=True, populate_by_name=True)

    stage: str = Field(alias="STAGE")
    tables: Tables
    queues: ChannelQueues
    ingest_queue_url: str = Field(alias="INGEST_QUEUE_URL")
    ingest_queue_arn: str = Field(alias="INGEST_QUEUE_ARN")
    escalation_state_machine_arn: str = Field(alias="ESCALATION_STATE_MACHINE_ARN")
    scheduler_role_arn: str = Field(alias="SCHEDULER_ROLE_ARN")
    schedule_group: str = Field(alias="SCHEDULE_GROUP")
    rate_limits: dict[Channel, int] = Field(alias="RATE_LIMITS")
    fallback_delay_seconds: int = Field(default=300, alias="FALLBACK_DELAY_SECONDS", ge=1, le=86400)
    digest_delay_seconds: int = Field(default=86400, alias="DIGEST_DELAY_SECONDS", ge=60)
    presence_max_age_seconds: int = Field(default=21600, alias="PRESENCE_MAX_AGE_SECONDS", ge=1)
    notification_retention_days: int = Field(default=90, alias="NOTIFICATION_RETENTION_DAYS", ge=1)
    fanout_page_size: int = Field(default=100, alias="FANOUT_PAGE_SIZE", ge=1, le=1000)

    @field_validator("rate_limits", mode="before")
    @classmethod
    def _parse_json(cls, raw: Any) -> Any:
        return json.loads(raw) if isinstance(raw, str) else raw


def _from_environment[T: BaseModel](model: type[T], nested: dict[str, type[BaseModel]]) -> T:
    env = dict(os.environ)
    payload: dict[str, Any] = dict(env)
    try:
        for field_name, nested_model in nested.items():
            payload[field_name] = nested_model.model_validate(env)
        return model.model_validate(payload)
    except ValidationError as error:
        missing = [".".join(str(p) for p in e["loc"]) for e in error.errors()]
        raise ConfigurationError(f"invalid or missing configuration: {missing}: {error}") from error
    except json.JSONDecodeError as error:
        raise ConfigurationError(f"a JSON environment variable is malformed: {error}") from error


@cache
def tables_from_environment() -> Tables:
    return _from_environment(Tables, {})


@cache
def router_settings() -> RouterSettings:
    return _from_environment(RouterSettings, {"tables": Tables, "queues": ChannelQueues})
