"""The email sender function on moto (SES v2) and the SendGrid sandbox."""

from __future__ import annotations

from email import message_from_string
from email.policy import default
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from botocore.stub import Stubber
from moto.ses.models import ses_backends

from herald.models import Category, Channel, Urgency
from herald.stores.keys import email_address
from herald.stores.suppression import SuppressionStore
from herald.unsubscribe import verify_token
from tests.integration.channels.conftest import ACCOUNT, REGION, Env, a_message, a_profile, handle

pytestmark = pytest.mark.integration

THROTTLED = "TooManyRequestsException"


def sent_by_ses() -> list[Any]:
    return list(ses_backends[ACCOUNT][REGION].sent_messages)


def send(env: Env, message: Any, app: Any | None = None) -> dict[str, Any]:
    env.create_record(message)
    env.enqueue("Email", message.queue_body())
    return handle(env, app or env.app("email_sender"), env.receive_event("Email"))


def marketing_message() -> Any:
    return a_message(
        Channel.EMAIL,
        type="marketing_promo",
        category=Category.MARKETING,
        urgency=Urgency.LOW,
        to="user42@example.com",
        data={"headline": "Winter sale", "discount": "20%", "cta_url": "https://example.com/sale"},
    )


def test_a_transactional_email_goes_through_ses(env: Env) -> None:
    message = a_message(Channel.EMAIL, to="ana@example.com")
    assert send(env, message) == {"batchItemFailures": []}
    (mail,) = sent_by_ses()
    assert "ana@example.com" in str(mail.destinations)
    record = env.record(message)
    delivery = record["deliveries"]["email"]
    assert (delivery["state"], delivery["provider"]) == ("sent", "ses")
    assert delivery["provider_message_id"] == mail.id
    assert [e["outcome"] for e in record["delivery_log"]] == ["sent"]


def test_marketing_mail_is_raw_mime_with_one_click_unsubscribe(env: Env) -> None:
    env.put_profile(a_profile(preferences={"marketing_opt_in": True}))
    message = marketing_message()
    assert send(env, message) == {"batchItemFailures": []}
    (mail,) = sent_by_ses()
    parsed = message_from_string(mail.raw_data, policy=default)
    assert parsed["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    link = str(parsed["List-Unsubscribe"]).strip().removeprefix("<").split(">")[0]
    assert link.startswith("https://api.example.com/v1/unsubscribe?token=")
    key = env.secret_value("UnsubscribeSigningSecret")
    claim = verify_token(key, parse_qs(urlsplit(link).query)["token"][0])
    assert (claim.user_id, claim.category) == ("42", "marketing")
    assert [p.get_content_type() for p in parsed.iter_parts()] == ["text/plain", "text/html"]
    assert link in parsed.get_body(("plain",)).get_content()  # the footer link is the same one


def test_marketing_without_opt_in_at_send_time_is_not_sent(env: Env) -> None:
    env.put_profile(a_profile(preferences={"marketing_opt_in": False}))
    message = marketing_message()
    assert send(env, message) == {"batchItemFailures": []}
    assert sent_by_ses() == []
    delivery = env.record(message)["deliveries"]["email"]
    assert (delivery["state"], delivery["code"]) == ("suppressed", "no_marketing_opt_in")


def test_marketing_email_turned_off_since_routing_is_not_sent(env: Env) -> None:
    # GIVEN opted in to marketing, but email turned off for marketing after it was routed
    preferences = {"marketing_opt_in": True, "muted_channels": {"marketing": ["email"]}}
    env.put_profile(a_profile(preferences=preferences))
    message = marketing_message()

    assert send(env, message) == {"batchItemFailures": []}

    assert sent_by_ses() == []
    delivery = env.record(message)["deliveries"]["email"]
    assert (delivery["state"], delivery["code"]) == ("suppressed", "muted")


def test_a_suppressed_address_is_not_sent_to(env: Env) -> None:
    SuppressionStore(env.client("dynamodb"), env.stack.tables["SuppressionTable"]).suppress(
        email_address("Ana@Example.com"), reason="bounce", source="ses"
    )
    message = a_message(Channel.EMAIL, to="ana@example.com")
    assert send(env, message) == {"batchItemFailures": []}
    assert sent_by_ses() == []
    record = env.record(message)
    assert record["deliveries"]["email"]["state"] == "suppressed"
    assert [e["outcome"] for e in record["delivery_log"]] == ["suppressed"]


def test_ses_throttling_fails_over_to_sendgrid(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EMAIL_FAILOVER", "true")
    app = env.app("email_sender")
    message = a_message(Channel.EMAIL, to="ana@example.com")
    with Stubber(app.sesv2) as ses:
        ses.add_client_error(
            "send_email", service_error_code="TooManyRequestsException", http_status_code=429
        )
        assert send(env, message, app) == {"batchItemFailures": []}
        ses.assert_no_pending_responses()
    (entry,) = env.sandbox.outbox.entries(provider="sendgrid")
    assert entry.recipient == "ana@example.com"
    record = env.record(message)
    delivery = record["deliveries"]["email"]
    assert (delivery["state"], delivery["provider"]) == ("sent", "sendgrid")
    assert delivery["provider_message_id"] == entry.provider_id
    assert "failed over from ses" in record["delivery_log"][0]["detail"]


def test_without_failover_ses_throttling_is_retried_later(env: Env) -> None:
    app = env.app("email_sender")
    message = a_message(Channel.EMAIL, to="ana@example.com")
    with Stubber(app.sesv2) as ses:
        ses.add_client_error(
            "send_email", service_error_code="TooManyRequestsException", http_status_code=429
        )
        result = send(env, message, app)
    assert len(result["batchItemFailures"]) == 1
    assert env.sandbox.outbox.entries(provider="sendgrid") == []
    assert env.record(message)["deliveries"]["email"]["state"] == "retry"


def test_sendgrid_as_the_primary_provider(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EMAIL_PROVIDER", "sendgrid")
    monkeypatch.setenv("EMAIL_REPLY_TO", "support@example.com")
    message = a_message(Channel.EMAIL, to="ana@example.com")
    assert send(env, message) == {"batchItemFailures": []}
    assert sent_by_ses() == []
    (entry,) = env.sandbox.outbox.entries(provider="sendgrid")
    assert entry.request["reply_to"] == {"email": "support@example.com"}
    assert entry.request["custom_args"] == {
        "notification_id": "ntf-1",
        "user_id": "42",
        "herald_type": "payment_receipt",  # not `type`: the event webhook's own field (decision 023)
    }
    assert entry.subject and entry.body and entry.extra["html"]


def test_ses_message_rejected_is_recorded_and_not_retried(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EMAIL_FROM", "unverified@elsewhere.example")
    message = a_message(Channel.EMAIL, to="ana@example.com")
    assert send(env, message) == {"batchItemFailures": []}
    delivery = env.record(message)["deliveries"]["email"]
    assert (delivery["state"], delivery["code"]) == ("failed", "MessageRejected")


def test_without_an_address_in_the_message_the_profile_email_is_used(env: Env) -> None:
    env.put_profile(a_profile(email="profile@example.com"))
    message = a_message(Channel.EMAIL)
    assert send(env, message) == {"batchItemFailures": []}
    (mail,) = sent_by_ses()
    assert "profile@example.com" in str(mail.destinations)
