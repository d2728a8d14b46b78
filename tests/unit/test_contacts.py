"""The person's contacts and SMS marketing consent (herald.contacts, decision 016). moto in-process
(`mock_aws`: no socket) stands in for the Users table, created from template.yaml's definition."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from herald.catalog import load_catalog
from herald.contacts import (
    ConsentSource,
    ContactsService,
    ContactsUpdate,
    NoPhoneForConsent,
    SmsMarketingChoice,
    contacts_document,
    normalize_email,
    normalize_phone,
)
from herald.directory import Directory, UserUpserted
from herald.models import Channel, NotificationRequest, Urgency
from herald.routing.decision import Decision, RoutingInput, Verdict, decide
from herald.stores.users import ConsentHistoryFull, UserStore, profile_from_item
from herald.users import Consent, Preferences, UserProfile
from tests.unit.conftest import USERS_TABLE

pytestmark = pytest.mark.unit

TABLE = USERS_TABLE
T0 = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
OLD_PHONE, NEW_PHONE = "+14155552671", "+14155550123"
ANOTHER_NUMBER = "marketing SMS: the recorded consent is for another phone number, not the user's current one"
APP = ConsentSource(user_agent="ShopApp/4.2 (iOS 19)", source_ip="203.0.113.7")


@pytest.fixture
def users(dynamodb: Any) -> UserStore:
    return UserStore(dynamodb, TABLE)


@pytest.fixture
def contacts(users: UserStore) -> ContactsService:
    return ContactsService(users)


@pytest.fixture
def directory(dynamodb: Any) -> Directory:
    return Directory(dynamodb, TABLE)


def update(**fields: Any) -> ContactsUpdate:
    return ContactsUpdate.model_validate(fields)


def grant(version: str = "sms-v1") -> dict[str, Any]:
    return {"granted": True, "wording_version": version}


def errors_of(document: dict[str, Any]) -> dict[tuple[str, ...], str]:
    with pytest.raises(ValidationError) as raised:
        ContactsUpdate.model_validate(document)
    return {tuple(str(p) for p in e["loc"]): e["type"] for e in raised.value.errors()}


# -- addresses -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("written", "region", "e164"),
    [
        ("+1 (415) 555-2671", None, "+14155552671"),
        ("07911 123456", "GB", "+447911123456"),
        ("07911 123456", "gb", "+447911123456"),
        ("+44 7911 123456", "US", "+447911123456"),  # an international number ignores the hint
    ],
)
def test_phone_numbers_become_e164(written: str, region: str | None, e164: str) -> None:
    assert update(phone=written, region=region).phone == e164


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        ({"phone": "4155552671"}, {("phone",): "invalid_phone"}),  # national, no region
        ({"phone": "+44 123"}, {("phone",): "invalid_phone"}),  # too short for the UK
        ({"phone": "call me"}, {("phone",): "invalid_phone"}),
        ({"phone": "07911 123456", "region": "XX"}, {("region",): "unknown_region"}),
        ({"email": "not-an-address"}, {("email",): "invalid_email"}),
        ({"email": "a@example.test"}, {("email",): "invalid_email"}),  # special-use domain
        ({"email": "jörg@example.com"}, {("email",): "invalid_email"}),  # SES: ASCII local parts
        ({"sms_marketing": {"granted": True}}, {("sms_marketing", "wording_version"): "missing"}),
        ({"sms_marketing": None}, {("sms_marketing",): "model_type"}),
        ({"user_id": "u2"}, {("user_id",): "extra_forbidden"}),
    ],
)
def test_invalid_contacts_are_field_errors(document: dict[str, Any], expected: dict) -> None:
    assert errors_of(document) == expected


def test_emails_are_kept_as_herald_keeps_addresses() -> None:
    assert normalize_email("Foo.Bar@Example.COM") == "foo.bar@example.com"
    assert normalize_email("ann@Bücher.de") == "ann@xn--bcher-kva.de"  # as SES sends and reports it


def test_the_library_functions_say_why() -> None:
    assert normalize_phone("+1 415 555 2671") == "+14155552671"
    with pytest.raises(ValueError, match="needs `region`"):
        normalize_phone("4155552671")


def test_a_withdrawal_needs_no_wording_version() -> None:
    assert SmsMarketingChoice.model_validate({"granted": False}).wording_version is None


# -- the overlay ---------------------------------------------------------------------------------


def test_the_persons_contacts_win_over_the_directory_and_survive_its_upserts(
    contacts: ContactsService, users: UserStore, directory: Directory
) -> None:
    directory.apply(UserUpserted(user_id="42", version=1, email="work@example.com", phone="+14155550100"))
    contacts.update("42", update(email="Me@Example.com"), APP)

    directory.apply(UserUpserted(user_id="42", version=2, email="new-work@example.com", phone="+14155550199"))

    profile = users.get_profile("42")
    assert profile is not None
    assert profile.email == "me@example.com"  # theirs
    assert profile.phone == "+14155550199"  # never set by them: the directory's


def test_omitted_contacts_are_left_alone_and_null_removes_one(
    contacts: ContactsService, directory: Directory
) -> None:
    directory.apply(UserUpserted(user_id="42", version=1, email="work@example.com", phone="+14155550100"))
    contacts.update("42", update(phone="+447911123456"), APP)

    document = contacts.update("42", update(email=None), APP)

    assert (document.email, document.phone) == (None, "+447911123456")


# -- consent -------------------------------------------------------------------------------------


def test_a_grant_is_recorded_with_its_proof(contacts: ContactsService, users: UserStore) -> None:
    document = contacts.update("42", update(phone="+14155552671", sms_marketing=grant("sms-v3")), APP, now=T0)

    profile = users.get_profile("42")
    assert profile is not None and profile.sms_marketing_consent is not None
    assert profile.sms_marketing_consent.given_at == T0
    assert profile.sms_marketing_consent.wording_version == "sms-v3"
    assert profile.sms_marketing_consent.source == "api; user-agent: ShopApp/4.2 (iOS 19)"
    assert profile.sms_marketing_consent.phone == "+14155552671"  # the one number it covers
    assert (document.sms_marketing.granted, document.sms_marketing.phone) == (True, "+14155552671")
    [event] = users.consent_history("42")
    assert event.model_dump(mode="json") == {
        "kind": "sms_marketing",
        "granted": True,
        "at": "2026-11-30T12:00:00Z",
        "source": "api; user-agent: ShopApp/4.2 (iOS 19)",
        "wording_version": "sms-v3",
        "phone": "+14155552671",
        "reason": None,
        "user_agent": "ShopApp/4.2 (iOS 19)",
        "source_ip": "203.0.113.7",
    }


def test_the_history_is_append_only_and_records_changes_only(
    contacts: ContactsService, users: UserStore
) -> None:
    contacts.update("42", update(phone="+14155552671", sms_marketing=grant("v1")), APP, now=T0)
    contacts.update("42", update(sms_marketing=grant("v1")), APP, now=T0 + timedelta(minutes=1))  # repeat
    contacts.update("42", update(sms_marketing=grant("v2")), APP, now=T0 + timedelta(minutes=2))
    contacts.update(
        "42", update(sms_marketing={"granted": False}), ConsentSource(), now=T0 + timedelta(minutes=3)
    )
    contacts.update(
        "42", update(sms_marketing={"granted": False}), APP, now=T0 + timedelta(minutes=4)
    )  # repeat

    history = users.consent_history("42")

    assert [(e.granted, e.wording_version, e.at - T0) for e in history] == [
        (True, "v1", timedelta(0)),
        (True, "v2", timedelta(minutes=2)),
        (False, None, timedelta(minutes=3)),
    ]
    assert history[2].source == "api" and history[2].user_agent is None
    profile = users.get_profile("42")
    assert profile is not None and profile.sms_marketing_consent is None
    # The grant's given_at is the original one: a repeated grant did not rewrite the proof.
    assert users.consent_history("42")[0].at == T0


def test_a_withdrawal_in_the_app_overrides_the_directorys_consent_for_good(
    contacts: ContactsService, users: UserStore, directory: Directory
) -> None:
    consent = {"given_at": "2026-01-01T00:00:00Z", "source": "signup form"}
    directory.apply(
        UserUpserted(user_id="42", version=1, phone="+14155550100", sms_marketing_consent=consent)
    )

    contacts.update("42", update(sms_marketing={"granted": False}), APP)
    directory.apply(
        UserUpserted(user_id="42", version=2, phone="+14155550100", sms_marketing_consent=consent)
    )

    profile = users.get_profile("42")
    assert profile is not None and profile.sms_marketing_consent is None
    assert [e.phone for e in users.consent_history("42")] == ["+14155550100"]  # the directory's number


def test_consent_without_a_phone_number_is_refused_and_nothing_is_written(
    contacts: ContactsService, users: UserStore
) -> None:
    with pytest.raises(NoPhoneForConsent):
        contacts.update("42", update(email="a@example.com", sms_marketing=grant()), APP)

    assert users.get_profile("42") is None
    assert users.consent_history("42") == []


def test_a_full_history_refuses_the_change_whole(dynamodb: Any) -> None:
    users = UserStore(dynamodb, TABLE, max_consent_events=2)
    contacts = ContactsService(users)
    contacts.update("42", update(phone="+14155552671", sms_marketing=grant("v1")), APP)
    contacts.update("42", update(sms_marketing={"granted": False}), APP)

    with pytest.raises(ConsentHistoryFull):
        contacts.update("42", update(email="b@example.com", sms_marketing=grant("v2")), APP)

    profile = users.get_profile("42")
    assert profile is not None
    assert (profile.email, profile.sms_marketing_consent) == (None, None)  # the transaction wrote nothing
    assert len(users.consent_history("42")) == 2


def test_an_app_without_a_user_agent_is_recorded_as_the_api() -> None:
    assert ConsentSource(user_agent="   ").label == "api"
    assert ConsentSource(user_agent="x" * 1000).agent == "x" * 256


# -- a consent covers one number -----------------------------------------------------------------


def marketing_sms(user: UserProfile) -> Decision:
    """The router's decision for a marketing SMS to `user`, opted in to marketing (marketing_promo, on
    SMS at once)."""
    user = user.model_copy(update={"preferences": Preferences(marketing_opt_in=True)})
    entry = (
        load_catalog()
        .entry("marketing_promo")
        .model_copy(update={"channels": frozenset({Channel.SMS}), "urgency": Urgency.CRITICAL})
    )
    request = NotificationRequest(event_id="e", type="marketing_promo", user_id=user.user_id)
    limits = {Channel.SMS: 5}
    return decide(RoutingInput(request, entry, user, False, frozenset(), {}, limits, T0))


def sms_block_reason(decision: Decision) -> str | None:
    return next(
        (s.reason for s in decision.trace if s.channel is Channel.SMS and s.verdict is Verdict.BLOCK), None
    )


def history(users: UserStore) -> list[tuple[bool, str | None, str | None, str | None]]:
    return [(e.granted, e.phone, e.wording_version, e.reason) for e in users.consent_history("42")]


def test_changing_the_phone_ends_the_consent_and_the_proof_for_the_old_number_stays(
    contacts: ContactsService, users: UserStore
) -> None:
    contacts.update("42", update(phone=OLD_PHONE, sms_marketing=grant("v1")), APP, now=T0)

    document = contacts.update("42", update(phone=NEW_PHONE), APP, now=T0 + timedelta(days=1))

    assert document.phone == NEW_PHONE
    assert (document.sms_marketing.granted, document.sms_marketing.phone) == (False, None)
    profile = users.get_profile("42")
    assert profile is not None and profile.sms_marketing_consent is None
    assert history(users) == [(True, OLD_PHONE, "v1", None), (False, OLD_PHONE, None, "phone changed")]
    ended = users.consent_history("42")[1]
    assert (ended.at, ended.source, ended.user_agent) == (T0 + timedelta(days=1), APP.label, APP.agent)
    decision = marketing_sms(profile)
    assert decision.deliveries == ()
    assert sms_block_reason(decision) == "marketing SMS without recorded consent"


def test_the_same_wording_granted_again_for_the_new_number_is_a_new_entry(
    contacts: ContactsService, users: UserStore
) -> None:
    contacts.update("42", update(phone=OLD_PHONE, sms_marketing=grant("v1")), APP, now=T0)
    contacts.update("42", update(phone=NEW_PHONE), APP, now=T0 + timedelta(minutes=1))

    document = contacts.update("42", update(sms_marketing=grant("v1")), APP, now=T0 + timedelta(minutes=2))

    assert (document.sms_marketing.granted, document.sms_marketing.phone) == (True, NEW_PHONE)
    assert history(users) == [
        (True, OLD_PHONE, "v1", None),
        (False, OLD_PHONE, None, "phone changed"),
        (True, NEW_PHONE, "v1", None),
    ]
    profile = users.get_profile("42")
    assert profile is not None and profile.sms_marketing_consent is not None
    assert profile.sms_marketing_consent.phone == NEW_PHONE
    assert profile.sms_marketing_consent.given_at == T0 + timedelta(minutes=2)


def test_a_new_number_granted_in_the_same_request_ends_the_old_consent_and_records_the_new(
    contacts: ContactsService, users: UserStore
) -> None:
    contacts.update("42", update(phone=OLD_PHONE, sms_marketing=grant("v1")), APP, now=T0)

    contacts.update("42", update(phone=NEW_PHONE, sms_marketing=grant("v1")), APP, now=T0 + timedelta(1))

    assert history(users) == [
        (True, OLD_PHONE, "v1", None),
        (False, OLD_PHONE, None, "phone changed"),
        (True, NEW_PHONE, "v1", None),
    ]


def test_a_withdrawal_sent_with_a_new_number_is_one_withdrawal_of_the_old_one(
    contacts: ContactsService, users: UserStore
) -> None:
    contacts.update("42", update(phone=OLD_PHONE, sms_marketing=grant("v1")), APP, now=T0)

    contacts.update("42", update(phone=NEW_PHONE, sms_marketing={"granted": False}), APP, now=T0)

    assert history(users) == [(True, OLD_PHONE, "v1", None), (False, OLD_PHONE, None, None)]


def test_the_same_number_written_differently_or_another_field_changes_nothing(
    contacts: ContactsService, users: UserStore
) -> None:
    contacts.update("42", update(phone=OLD_PHONE, sms_marketing=grant("v1")), APP, now=T0)

    contacts.update("42", update(phone="+1 (415) 555-2671", email="a@example.com"), APP, now=T0)
    contacts.update("42", update(sms_marketing=grant("v1")), APP, now=T0)  # a repeat: same number too

    assert history(users) == [(True, OLD_PHONE, "v1", None)]
    profile = users.get_profile("42")
    assert profile is not None and profile.sms_marketing_consent is not None


def test_a_phone_set_in_the_app_ends_the_directorys_consent_too(
    contacts: ContactsService, users: UserStore, directory: Directory
) -> None:
    consent = {"given_at": "2026-01-01T00:00:00Z", "source": "signup form"}  # no number named
    directory.apply(UserUpserted(user_id="42", version=1, phone=OLD_PHONE, sms_marketing_consent=consent))

    contacts.update("42", update(phone=NEW_PHONE), APP, now=T0)

    profile = users.get_profile("42")
    assert profile is not None and profile.sms_marketing_consent is None
    assert history(users) == [(False, OLD_PHONE, None, "phone changed")]


def test_the_directorys_consent_covers_the_number_it_names_not_a_newer_phone(
    users: UserStore, directory: Directory
) -> None:
    consent = {"given_at": "2026-01-01T00:00:00Z", "source": "signup form", "phone": OLD_PHONE}
    directory.apply(UserUpserted(user_id="42", version=1, phone=OLD_PHONE, sms_marketing_consent=consent))
    directory.apply(UserUpserted(user_id="42", version=2, phone=NEW_PHONE, sms_marketing_consent=consent))

    profile = users.get_profile("42")
    assert profile is not None and profile.sms_marketing_consent is not None
    assert profile.sms_marketing_consent.covers(NEW_PHONE, profile.phone) is False
    decision = marketing_sms(profile)
    assert decision.deliveries == ()
    assert sms_block_reason(decision) == ANOTHER_NUMBER
    assert contacts_document(profile).sms_marketing.granted is False


def test_a_directory_consent_naming_no_number_covers_the_directorys_phone_not_the_persons_own(
    contacts: ContactsService, users: UserStore, directory: Directory
) -> None:
    contacts.update("42", update(phone=NEW_PHONE), APP, now=T0)  # their own number, no consent
    consent = {"given_at": "2026-01-01T00:00:00Z", "source": "signup form"}

    directory.apply(UserUpserted(user_id="42", version=1, phone=OLD_PHONE, sms_marketing_consent=consent))

    profile = users.get_profile("42")
    assert profile is not None and profile.phone == NEW_PHONE
    assert profile.sms_marketing_consent is not None and profile.sms_marketing_consent.phone == OLD_PHONE
    assert sms_block_reason(marketing_sms(profile)) == ANOTHER_NUMBER


GIVEN = {"given_at": "2026-01-01T00:00:00Z", "source": "signup"}


@pytest.mark.parametrize(
    ("item", "covered"),
    [
        # the directory's consent naming no number: the phone of the same UserUpserted
        ({"phone": OLD_PHONE, "sms_marketing_consent": GIVEN}, OLD_PHONE),
        # the directory sent no phone with it: it covers no number
        ({"sms_marketing_consent": GIVEN}, None),
        # the person's own consent written before consents named their number: the current phone
        ({"phone": OLD_PHONE, "own": {"phone": NEW_PHONE, "sms_marketing_consent": GIVEN}}, NEW_PHONE),
        ({"phone": OLD_PHONE, "own": {"sms_marketing_consent": GIVEN}}, OLD_PHONE),
    ],
)
def test_a_consent_naming_no_number_is_read_as_covering_one(
    item: dict[str, Any], covered: str | None
) -> None:
    profile = profile_from_item({"user_id": "42", **item})

    consent = profile.sms_marketing_consent
    assert (consent.phone if consent else None) == covered


def test_a_consent_covers_only_its_number() -> None:
    named = Consent(given_at=T0, source="api", phone=OLD_PHONE)
    unnamed = Consent(given_at=T0, source="api")

    assert named.covers(OLD_PHONE, NEW_PHONE) and not named.covers(NEW_PHONE, NEW_PHONE)
    assert unnamed.covers(NEW_PHONE, NEW_PHONE) and not unnamed.covers(OLD_PHONE, NEW_PHONE)
    assert not named.covers(None, None) and not unnamed.covers(None, None)
    with pytest.raises(ValidationError):
        Consent(given_at=T0, source="api", phone="4155552671")  # E.164 only
