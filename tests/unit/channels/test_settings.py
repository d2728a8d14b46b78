"""Sender settings are validated at cold start and fail loudly."""

from __future__ import annotations

import pytest

from herald.channels.settings import (
    EmailSenderSettings,
    PushSenderSettings,
    SmsSenderSettings,
    WebhookSenderSettings,
)
from herald.settings import ConfigurationError, RouterSettings, TemplateSettings, load

pytestmark = pytest.mark.unit

COMMON = {
    "STAGE": "dev",
    "USERS_TABLE": "users",
    "SUPPRESSION_TABLE": "suppression",
    "NOTIFICATIONS_TABLE": "notifications",
}
EMAIL = {
    **COMMON,
    "EMAIL_QUEUE_URL": "https://sqs/email",
    "EMAIL_DLQ_URL": "https://sqs/email-dlq",
    "EMAIL_FROM": "notifications@example.com",
    "EMAIL_REPLY_TO": "",
    "UNSUBSCRIBE_SECRET_ARN": "arn:unsub",
    "API_BASE_URL": "https://api.example.com",
}


def test_email_defaults_and_blank_optionals() -> None:
    settings = load(EmailSenderSettings, EMAIL)
    assert settings.email_provider == "ses"
    assert settings.reply_to is None
    assert settings.queue_url == "https://sqs/email"
    assert settings.dead_letter_queue_url == "https://sqs/email-dlq"
    assert not settings.failover_active


def test_failover_needs_both_providers() -> None:
    with_sendgrid = {**EMAIL, "EMAIL_FAILOVER": "true", "SENDGRID_SECRET_ARN": "arn:sg"}
    assert load(EmailSenderSettings, with_sendgrid).failover_active
    assert not load(EmailSenderSettings, {**EMAIL, "EMAIL_FAILOVER": "true"}).failover_active


def test_sendgrid_as_primary_needs_its_secret() -> None:
    with pytest.raises(ConfigurationError, match="SENDGRID_SECRET_ARN"):
        load(EmailSenderSettings, {**EMAIL, "EMAIL_PROVIDER": "sendgrid"})


@pytest.mark.parametrize(
    ("model", "env", "missing"),
    [
        (EmailSenderSettings, {k: v for k, v in EMAIL.items() if k != "EMAIL_FROM"}, "EMAIL_FROM"),
        (PushSenderSettings, {**COMMON, "PUSH_QUEUE_URL": "q"}, "FCM_SECRET_ARN"),
        (SmsSenderSettings, {**COMMON, "TWILIO_SECRET_ARN": "t"}, "SMS_QUEUE_URL"),
        (WebhookSenderSettings, {**COMMON, "WEBHOOK_QUEUE_URL": "q"}, "WEBHOOK_SECRET_PREFIX"),
    ],
)
def test_a_missing_variable_is_named(model: type, env: dict[str, str], missing: str) -> None:
    with pytest.raises(ConfigurationError, match=missing):
        load(model, env)


def test_sms_status_callback_is_optional() -> None:
    env = {**COMMON, "SMS_QUEUE_URL": "q", "SMS_DLQ_URL": "d", "TWILIO_SECRET_ARN": "t"}
    env["TWILIO_STATUS_CALLBACK_URL"] = ""
    assert load(SmsSenderSettings, env).status_callback_url is None


def test_settings_are_read_from_the_process_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN the variables the template sets, in the process environment
    env = {**COMMON, "SMS_QUEUE_URL": "q", "SMS_DLQ_URL": "d", "TWILIO_SECRET_ARN": "arn:twilio"}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    # WHEN the function loads its settings THEN they come from there, typed
    settings = load(SmsSenderSettings)
    assert (settings.twilio_secret_arn, settings.queue_url, settings.dead_letter_queue_url) == (
        "arn:twilio",
        "q",
        "d",
    )
    monkeypatch.delenv("TWILIO_SECRET_ARN")
    with pytest.raises(ConfigurationError, match="TWILIO_SECRET_ARN"):
        load(SmsSenderSettings)


def test_a_malformed_json_variable_fails_loudly_at_cold_start(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RATE_LIMITS", '{"email": 3')
    with pytest.raises(ConfigurationError, match="rate_limits"):
        load(RouterSettings)


def test_template_settings_default_to_the_packaged_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TEMPLATE_BUCKET", raising=False)
    monkeypatch.setenv("TEMPLATE_CACHE_TTL_SECONDS", "")
    settings = load(TemplateSettings)
    assert (settings.bucket, settings.cache_ttl_seconds) == ("", 300.0)
    monkeypatch.setenv("TEMPLATE_CACHE_TTL_SECONDS", "-1")
    with pytest.raises(ConfigurationError, match="TEMPLATE_CACHE_TTL_SECONDS"):
        load(TemplateSettings)
