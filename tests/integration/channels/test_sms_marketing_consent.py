"""The SMS sender's TCPA check at send time: a marketing text goes only to the number the recorded
consent covers (decision 016), whatever the router planned earlier. moto + the Twilio sandbox."""

from __future__ import annotations

from typing import Any

import pytest

from herald.models import Category, Urgency
from herald.users import UserProfile
from tests.integration.channels.conftest import Env, a_profile
from tests.integration.channels.test_escalation_and_channels import deliver, security_sms

pytestmark = pytest.mark.integration

CONSENTED, OTHER = "+14155552671", "+14155550100"


def consent(phone: str | None) -> dict[str, Any]:
    given = {"given_at": "2026-01-01T00:00:00Z", "source": "signup form"}
    return given if phone is None else {**given, "phone": phone}


def opted_in(phone: str, consented: str | None) -> UserProfile:
    """The person's profile: `phone`, opted in to marketing, an SMS consent naming `consented`."""
    preferences = {"marketing_opt_in": True}
    return a_profile(phone=phone, preferences=preferences, sms_marketing_consent=consent(consented))


def marketing_sms(to: str, notification_id: str) -> Any:
    return security_sms(
        notification_id=notification_id, to=to, category=Category.MARKETING, urgency=Urgency.LOW
    )


def test_a_consent_for_one_number_does_not_let_marketing_texts_go_to_another(env: Env) -> None:
    env.put_profile(opted_in(phone=OTHER, consented=CONSENTED))
    message = marketing_sms(OTHER, "ntf-1")

    assert deliver(env, "Sms", "sms_sender", message) == {"batchItemFailures": []}

    delivery = env.record(message)["deliveries"]["sms"]
    assert (delivery["state"], delivery["code"]) == ("suppressed", "no_consent_for_number")
    assert env.sandbox.outbox.entries(provider="twilio") == []

    env.put_profile(opted_in(phone=CONSENTED, consented=CONSENTED))
    consented = marketing_sms(CONSENTED, "ntf-2")
    deliver(env, "Sms", "sms_sender", consented)
    assert env.record(consented)["deliveries"]["sms"]["state"] == "sent"
    [sent] = env.sandbox.outbox.entries(provider="twilio")
    assert sent.recipient == CONSENTED


def test_a_text_planned_for_the_old_number_is_not_sent_once_the_phone_changed(env: Env) -> None:
    # GIVEN a marketing text planned (e.g. deferred) for the number the person had then, and a
    # consent that names no number: it covers the phone recorded with it, which is now another one
    message = marketing_sms(CONSENTED, "ntf-1")
    env.put_profile(opted_in(phone=OTHER, consented=None))

    deliver(env, "Sms", "sms_sender", message)

    assert env.record(message)["deliveries"]["sms"]["code"] == "no_consent_for_number"
    assert env.sandbox.outbox.entries(provider="twilio") == []


def test_a_marketing_text_is_not_sent_once_sms_was_turned_off_for_marketing(env: Env) -> None:
    # GIVEN a consented number, but SMS turned off for marketing after the text was planned
    profile = opted_in(phone=CONSENTED, consented=CONSENTED)
    preferences = {"marketing_opt_in": True, "muted_channels": {"marketing": ["sms"]}}
    env.put_profile(profile.model_copy(update={"preferences": type(profile.preferences)(**preferences)}))
    message = marketing_sms(CONSENTED, "ntf-1")

    deliver(env, "Sms", "sms_sender", message)

    delivery = env.record(message)["deliveries"]["sms"]
    assert (delivery["state"], delivery["code"]) == ("suppressed", "muted")
    assert env.sandbox.outbox.entries(provider="twilio") == []
