"""The routing decision as a pure function: every row of the urgency table and every rule."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from herald.catalog import load_catalog
from herald.models import Category, Channel, NotificationRequest, Urgency
from herald.routing.decision import Decision, RoutingInput, Verdict, decide, notification_id_for
from herald.stores.keys import email_address, push_address, sms_address
from herald.users import UserProfile

pytestmark = pytest.mark.unit

NOON_UTC = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
LIMITS = {Channel.EMAIL: 20, Channel.PUSH: 30, Channel.SMS: 5, Channel.REALTIME: 120, Channel.WEBHOOK: 600}


def a_user(**overrides: Any) -> UserProfile:
    fields: dict[str, Any] = {
        "user_id": "42",
        "email": "ana@example.com",
        "phone": "+351912345678",
        "locale": "pt-PT",
        "time_zone": "Europe/Lisbon",
        "devices": {"tok-1": {"platform": "android", "registered_at": "2026-01-01T00:00:00Z"}},
        "preferences": {"marketing_opt_in": False},
    }
    fields.update(overrides)
    return UserProfile.model_validate(fields)


def route(
    type_name: str,
    user: UserProfile | None = None,
    *,
    online: bool = False,
    suppressed: frozenset[str] = frozenset(),
    usage: dict[Channel, int] | None = None,
    now: datetime = NOON_UTC,
    **request_fields: Any,
) -> Decision:
    entry = load_catalog().entry(type_name)
    if request_fields.pop("sample", False):
        request_fields["data"] = entry.sample_data
    request = NotificationRequest(event_id="evt-1", type=type_name, user_id="42", **request_fields)
    return decide(
        RoutingInput(
            request=request,
            entry=entry,
            user=user if user is not None else a_user(),
            online=online,
            suppressed=suppressed,
            rate_usage=usage or {},
            rate_limits=LIMITS,
            now=now,
        )
    )


def channels(decision: Decision) -> set[Channel]:
    return {d.channel for d in decision.deliveries}


def trace_of(decision: Decision, rule: str) -> str:
    return " | ".join(s.reason for s in decision.trace if s.rule == rule)


def blocked(decision: Decision) -> dict[Channel | None, str]:
    return {s.channel: s.rule for s in decision.trace if s.verdict is Verdict.BLOCK}


# -- the urgency table ---------------------------------------------------------------------------


def test_critical_sends_push_sms_and_email_at_once() -> None:
    decision = route("security_alert")

    assert channels(decision) == {Channel.PUSH, Channel.SMS, Channel.EMAIL}
    assert decision.escalation is None
    assert all(d.not_before is None for d in decision.deliveries)
    push = next(d for d in decision.deliveries if d.channel is Channel.PUSH)
    assert push.device_tokens == ("tok-1",)


def test_critical_adds_in_app_when_the_user_is_online() -> None:
    assert channels(route("security_alert", online=True)) == {
        Channel.PUSH,
        Channel.SMS,
        Channel.EMAIL,
        Channel.REALTIME,
    }


def test_high_offline_escalates_from_push_to_email() -> None:
    decision = route("payment_receipt")

    assert decision.deliveries == ()
    assert decision.escalation is not None
    first, email = decision.escalation.steps
    assert (first.delivery.channel, first.wait_seconds, first.until) == (Channel.PUSH, 300, "acknowledged")
    assert first.delivery.device_tokens == ("tok-1",)
    assert (email.delivery.channel, email.delivery.to, email.wait_seconds) == (
        Channel.EMAIL,
        "ana@example.com",
        None,
    )
    assert decision.escalation.deliver_at == NOON_UTC


def test_high_online_escalates_from_in_app_to_email() -> None:
    decision = route("payment_receipt", online=True)

    assert decision.escalation is not None
    assert decision.escalation.channels == (Channel.REALTIME, Channel.EMAIL)


def test_the_driver_chain_pushes_then_texts_after_five_seconds() -> None:
    decision = route("driver_arrived", sample=True)

    assert decision.escalation is not None
    push, sms = decision.escalation.steps
    assert (push.delivery.channel, push.wait_seconds, push.until) == (Channel.PUSH, 5, "acknowledged")
    assert (sms.delivery.channel, sms.delivery.to) == (Channel.SMS, "+351912345678")
    assert "push, then sms if not acknowledged within 5 s" in trace_of(decision, "urgency_table")


def test_the_driver_chain_starts_in_app_for_someone_online() -> None:
    decision = route("driver_arrived", sample=True, online=True)

    assert decision.escalation is not None
    assert decision.escalation.channels == (Channel.REALTIME, Channel.SMS)


def test_the_fraud_chain_texts_first_and_pushes_only_if_the_sms_cannot_be_delivered() -> None:
    decision = route("fraud_alert", sample=True)

    assert decision.escalation is not None
    sms, push = decision.escalation.steps
    assert (sms.delivery.channel, sms.until, sms.wait_seconds) == (Channel.SMS, "delivered", 300)
    assert push.delivery.channel is Channel.PUSH
    assert "sms, then push if that cannot be delivered" in trace_of(decision, "urgency_table")


@pytest.mark.parametrize(
    ("type_name", "user", "suppressed", "left"),
    [
        ("driver_arrived", a_user(phone=None), frozenset(), Channel.PUSH),  # no phone
        ("driver_arrived", a_user(), frozenset({sms_address("+351912345678")}), Channel.PUSH),  # STOP
        ("fraud_alert", a_user(devices={}), frozenset(), Channel.SMS),  # no device
        ("fraud_alert", a_user(preferences={"channels": {"sms": False}}), frozenset(), Channel.PUSH),
    ],
)
def test_a_chain_never_uses_a_channel_the_decision_refused(
    type_name: str, user: UserProfile, suppressed: frozenset[str], left: Channel
) -> None:
    decision = route(type_name, user, suppressed=suppressed, sample=True)

    assert decision.escalation is None
    assert channels(decision) == {left}
    assert any(s.rule == "escalation" and s.verdict is Verdict.SKIP for s in decision.trace)


def test_a_chain_with_no_reachable_step_lands_in_the_inbox_only() -> None:
    decision = route("fraud_alert", a_user(phone=None, devices={}), sample=True)

    assert decision.deliveries == () and decision.escalation is None
    assert decision.status == "inbox_only"


def test_high_without_push_or_presence_sends_email_now() -> None:
    decision = route("payment_receipt", a_user(devices={}))

    assert channels(decision) == {Channel.EMAIL}
    assert decision.escalation is None


def test_high_without_email_sends_the_push_alone() -> None:
    decision = route("payment_receipt", a_user(email=None))

    assert channels(decision) == {Channel.PUSH}
    assert decision.escalation is None


def test_medium_offline_pushes_and_schedules_a_digest() -> None:
    decision = route("order_shipped")

    assert channels(decision) == {Channel.PUSH}
    assert decision.digest_due_at == NOON_UTC + timedelta(hours=24)
    assert decision.inbox


def test_medium_online_goes_in_app_instead_of_push() -> None:
    assert channels(route("comment_reply", online=True)) == {Channel.REALTIME}


@pytest.mark.parametrize(
    ("user", "suppressed"),
    [
        (a_user(devices={}), frozenset()),  # the app is not installed
        (a_user(), frozenset({push_address("tok-1")})),  # every token is dead
        (a_user(preferences={"channels": {"push": False}}), frozenset()),  # push turned off
    ],
    ids=["no device", "dead tokens", "push off"],
)
def test_medium_offline_without_a_live_device_is_emailed_at_once_and_never_digested(
    user: UserProfile, suppressed: frozenset[str]
) -> None:
    decision = route("order_shipped", user, suppressed=suppressed)

    assert channels(decision) == {Channel.EMAIL}
    assert decision.deliveries[0].not_before is None
    assert decision.digest_due_at is None
    assert decision.inbox


def test_medium_without_push_or_email_in_its_channels_stays_in_the_inbox() -> None:
    decision = route("order_shipped", a_user(devices={}, preferences={"channels": {"email": False}}))

    assert decision.deliveries == ()
    assert decision.status == "inbox_only"


def test_medium_with_nothing_reachable_lands_in_the_inbox_only() -> None:
    decision = route("order_shipped", a_user(devices={}, email=None))

    assert decision.deliveries == ()
    assert decision.digest_due_at is None
    assert decision.status == "inbox_only"


def test_low_sends_email_only_with_marketing_opt_in() -> None:
    decision = route("marketing_promo", a_user(preferences={"marketing_opt_in": True}))

    assert channels(decision) == {Channel.EMAIL}


def test_low_without_marketing_opt_in_is_skipped_with_the_reason() -> None:
    decision = route("marketing_promo")

    assert decision.deliveries == ()
    assert decision.status == "skipped"
    assert any("opted in to marketing" in s.reason for s in decision.trace if s.verdict is Verdict.BLOCK)


def test_system_goes_by_webhook_and_not_to_the_inbox() -> None:
    subscriber = a_user(
        webhook={"url": "https://hooks.example.com/herald", "secret_name": "herald/dev/webhooks/42"}
    )

    decision = route("order_webhook", subscriber)

    assert channels(decision) == {Channel.WEBHOOK}
    assert decision.deliveries[0].to == "https://hooks.example.com/herald"
    assert not decision.inbox


def test_system_without_an_endpoint_is_skipped() -> None:
    decision = route("order_webhook")

    assert decision.deliveries == ()
    assert blocked(decision) == {Channel.WEBHOOK: "suppression"}


def test_the_producer_may_raise_the_urgency() -> None:
    decision = route("order_shipped", urgency="critical")

    assert decision.urgency is Urgency.CRITICAL
    assert channels(decision) == {Channel.PUSH, Channel.EMAIL}  # order_shipped may not use SMS


# -- step 2: preferences -------------------------------------------------------------------------


def test_a_channel_the_user_turned_off_is_never_used() -> None:
    decision = route("security_alert", a_user(preferences={"channels": {"sms": False}}))

    assert channels(decision) == {Channel.PUSH, Channel.EMAIL}
    assert blocked(decision) == {Channel.SMS: "channel_opt_in"}


def test_a_channel_turned_off_for_a_category_is_not_used_for_it_and_still_for_others() -> None:
    # GIVEN email turned off for transactional notifications only (one cell of the matrix)
    user = a_user(preferences={"muted_channels": {"transactional": ["email"]}})
    before = route("payment_receipt", a_user(), sample=True)
    assert before.escalation and [s.delivery.channel for s in before.escalation.steps] == [
        Channel.PUSH,
        Channel.EMAIL,
    ]

    # WHEN a transactional and a security notification are routed
    receipt = route("payment_receipt", user, sample=True)
    alert = route("security_alert", user)

    # THEN the receipt goes by push alone (no email fallback), with the reason; security still emails
    assert channels(receipt) == {Channel.PUSH} and receipt.escalation is None
    assert blocked(receipt) == {Channel.EMAIL: "channel_opt_in"}
    assert "off for transactional" in trace_of(receipt, "channel_opt_in")
    assert Channel.EMAIL in channels(alert)


def test_a_muted_category_blocks_the_notification() -> None:
    decision = route("order_shipped", a_user(preferences={"muted_categories": ["transactional"]}))

    assert decision.status == "skipped"


def test_a_muted_type_blocks_the_notification() -> None:
    assert route("comment_reply", a_user(preferences={"muted_types": ["comment_reply"]})).status == "skipped"


def test_security_cannot_be_muted_as_a_category() -> None:
    user = a_user(preferences={"muted_categories": ["security"], "muted_types": ["security_alert"]})

    assert channels(route("security_alert", user)) == {Channel.PUSH, Channel.SMS, Channel.EMAIL}


def test_marketing_sms_needs_recorded_consent() -> None:
    entry = (
        load_catalog()
        .entry("marketing_promo")
        .model_copy(update={"channels": frozenset({Channel.EMAIL, Channel.SMS}), "urgency": Urgency.CRITICAL})
    )
    request = NotificationRequest(event_id="e", type="marketing_promo", user_id="42")
    opted_in = {"marketing_opt_in": True}

    def plan(user: UserProfile) -> set[Channel]:
        given = RoutingInput(request, entry, user, False, frozenset(), {}, LIMITS, NOON_UTC)
        return channels(decide(given))

    assert plan(a_user(preferences=opted_in)) == {Channel.EMAIL}
    consent = {"given_at": "2026-01-02T03:04:05Z", "source": "signup form"}
    assert plan(a_user(preferences=opted_in, sms_marketing_consent=consent)) == {Channel.EMAIL, Channel.SMS}


def test_a_consent_for_one_number_does_not_allow_marketing_sms_to_another() -> None:
    entry = (
        load_catalog()
        .entry("marketing_promo")
        .model_copy(update={"channels": frozenset({Channel.EMAIL, Channel.SMS}), "urgency": Urgency.CRITICAL})
    )
    request = NotificationRequest(event_id="e", type="marketing_promo", user_id="42")

    def decision(consented_number: str) -> Decision:
        consent = {"given_at": "2026-01-02T03:04:05Z", "source": "api", "phone": consented_number}
        user = a_user(preferences={"marketing_opt_in": True}, sms_marketing_consent=consent)
        return decide(RoutingInput(request, entry, user, False, frozenset(), {}, LIMITS, NOON_UTC))

    moved = decision("+14155552671")  # the user's phone is now +351912345678

    assert channels(moved) == {Channel.EMAIL}
    [step] = [s for s in moved.trace if s.channel is Channel.SMS]
    assert (step.rule, step.verdict) == ("channel_opt_in", Verdict.BLOCK)
    assert step.reason == (
        "marketing SMS: the recorded consent is for another phone number, not the user's current one"
    )
    sms = next(d for d in decision("+351912345678").deliveries if d.channel is Channel.SMS)
    assert sms.to == "+351912345678"


# -- step 3: suppression -------------------------------------------------------------------------


def test_suppressed_email_phone_and_dead_tokens_are_not_used() -> None:
    suppressed = frozenset(
        {email_address("ana@example.com"), sms_address("+351912345678"), push_address("tok-1")}
    )

    decision = route("security_alert", suppressed=suppressed)

    assert decision.deliveries == ()
    assert set(blocked(decision)) == {Channel.PUSH, Channel.SMS, Channel.EMAIL}


def test_only_live_device_tokens_are_pushed() -> None:
    user = a_user(
        devices={
            "dead": {"platform": "ios", "registered_at": "2026-01-01T00:00:00Z"},
            "live": {"platform": "android", "registered_at": "2026-01-01T00:00:00Z"},
        }
    )

    decision = route("order_shipped", user, suppressed=frozenset({push_address("dead")}))

    assert decision.deliveries[0].device_tokens == ("live",)


def test_email_suppression_is_case_insensitive() -> None:
    decision = route(
        "security_alert",
        a_user(email="Ana@Example.COM"),
        suppressed=frozenset({email_address("ana@example.com")}),
    )

    assert Channel.EMAIL not in channels(decision)


# -- step 5: quiet hours -------------------------------------------------------------------------

QUIET = {"start": "22:00", "end": "07:00"}
LISBON_MIDNIGHT = datetime(2026, 11, 23, 0, 0, tzinfo=UTC)  # 00:00 in Lisbon (UTC+0 in winter)


def test_quiet_hours_defer_medium_push_to_their_end() -> None:
    decision = route("order_shipped", a_user(quiet_hours=QUIET), now=LISBON_MIDNIGHT)

    assert decision.deliveries[0].channel is Channel.PUSH
    assert decision.deliveries[0].not_before == datetime(2026, 11, 23, 7, 0, tzinfo=UTC)
    assert any(s.verdict is Verdict.DEFER for s in decision.trace)


def test_quiet_hours_do_not_delay_email_or_in_app() -> None:
    decision = route("order_shipped", a_user(quiet_hours=QUIET), online=True, now=LISBON_MIDNIGHT)

    assert channels(decision) == {Channel.REALTIME}
    assert decision.deliveries[0].not_before is None


def test_critical_ignores_quiet_hours() -> None:
    decision = route("security_alert", a_user(quiet_hours=QUIET), now=LISBON_MIDNIGHT)

    assert all(d.not_before is None for d in decision.deliveries)
    assert channels(decision) == {Channel.PUSH, Channel.SMS, Channel.EMAIL}


def test_high_escalation_starts_when_quiet_hours_end() -> None:
    decision = route("payment_receipt", a_user(quiet_hours=QUIET), now=LISBON_MIDNIGHT)

    assert decision.escalation is not None
    assert decision.escalation.deliver_at == datetime(2026, 11, 23, 7, 0, tzinfo=UTC)


def test_quiet_hours_follow_the_users_zone() -> None:
    tokyo = a_user(quiet_hours=QUIET, time_zone="Asia/Tokyo")  # 00:00 UTC is 09:00 in Tokyo

    assert route("order_shipped", tokyo, now=LISBON_MIDNIGHT).deliveries[0].not_before is None


# -- step 6: rate limits -------------------------------------------------------------------------


def test_a_channel_over_its_hourly_limit_is_dropped() -> None:
    decision = route("order_shipped", usage={Channel.PUSH: 30})

    assert Channel.PUSH not in channels(decision)
    assert blocked(decision) == {Channel.PUSH: "rate_limit"}


def test_critical_is_exempt_from_rate_limits() -> None:
    decision = route("security_alert", usage={Channel.SMS: 999, Channel.PUSH: 999, Channel.EMAIL: 999})

    assert channels(decision) == {Channel.PUSH, Channel.SMS, Channel.EMAIL}


# -- trace and identity --------------------------------------------------------------------------


def test_unknown_user_is_skipped_with_a_reason() -> None:
    request = NotificationRequest(event_id="e", type="order_shipped", user_id="nobody")
    given = RoutingInput(
        request, load_catalog().entry("order_shipped"), None, False, frozenset(), {}, LIMITS, NOON_UTC
    )

    decision = decide(given)

    assert decision.status == "skipped"
    assert decision.trace[-1].reason == "no profile for user 'nobody'"


def test_the_trace_records_each_rule_in_design_order() -> None:
    user = a_user(quiet_hours=QUIET, preferences={"channels": {"sms": False}})
    suppressed = frozenset({email_address("ana@example.com")})

    decision = route(
        "order_shipped", user, suppressed=suppressed, usage={Channel.PUSH: 99}, now=LISBON_MIDNIGHT
    )

    rules = [s.rule for s in decision.trace]
    design_order = [
        "idempotency",
        "preferences",
        "suppression",
        "presence",
        "quiet_hours",
        "rate_limit",
        "urgency_table",
    ]
    assert [r for r in dict.fromkeys(rules)] == design_order
    critical = route("security_alert", user, suppressed=suppressed, now=LISBON_MIDNIGHT)
    assert [r for r in dict.fromkeys(s.rule for s in critical.trace)] == [
        "idempotency",
        "preferences",
        "channel_opt_in",
        "suppression",
        "presence",
        "quiet_hours",
        "rate_limit",
        "urgency_table",
    ]


def test_notification_ids_are_deterministic_per_recipient() -> None:
    assert notification_id_for("evt-1") == notification_id_for("evt-1")
    assert notification_id_for("evt-1#42") != notification_id_for("evt-1#43")
    assert len(notification_id_for("x")) <= 80  # a Step Functions execution name


def test_the_request_locale_overrides_the_users() -> None:
    assert route("order_shipped").locale == "pt-PT"
    assert route("order_shipped", locale="es").locale == "es"


def test_category_comes_from_the_catalog() -> None:
    assert route("marketing_promo").category is Category.MARKETING


def test_a_chain_in_quiet_hours_starts_when_they_end_and_never_texts_at_night() -> None:
    decision = route("driver_arrived", a_user(quiet_hours=QUIET), sample=True, now=LISBON_MIDNIGHT)

    assert decision.escalation is not None
    morning = datetime(2026, 11, 23, 7, 0, tzinfo=UTC)
    assert decision.escalation.deliver_at == morning
    assert [step.delivery.not_before for step in decision.escalation.steps] == [morning, morning]


def test_an_online_person_in_quiet_hours_gets_the_in_app_step_now_and_any_sms_only_after_them() -> None:
    decision = route(
        "driver_arrived", a_user(quiet_hours=QUIET), sample=True, online=True, now=LISBON_MIDNIGHT
    )

    assert decision.escalation is not None
    in_app, sms = decision.escalation.steps
    assert (in_app.delivery.channel, in_app.delivery.not_before) == (Channel.REALTIME, None)
    assert decision.escalation.deliver_at == LISBON_MIDNIGHT
    assert (sms.delivery.channel, sms.delivery.not_before) == (
        Channel.SMS,
        datetime(2026, 11, 23, 7, 0, tzinfo=UTC),
    )
