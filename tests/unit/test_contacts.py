"""The person's contacts and SMS marketing consent (herald.contacts, decision 016). moto in-process
(`mock_aws`: no socket) stands in for the Users table, created from template.yaml's definition."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from moto import mock_aws
from pydantic import ValidationError

from herald.contacts import (
    ConsentSource,
    ContactsService,
    ContactsUpdate,
    NoPhoneForConsent,
    SmsMarketingChoice,
    normalize_email,
    normalize_phone,
)
from herald.directory import Directory, UserUpserted
from herald.stores.users import ConsentHistoryFull, UserStore
from tests.support.aws import table_definitions

pytestmark = pytest.mark.unit

TABLE = "users"
T0 = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
APP = ConsentSource(user_agent="ShopApp/4.2 (iOS 19)", source_ip="203.0.113.7")


@pytest.fixture
def dynamodb(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        client.create_table(TableName=TABLE, **table_definitions()["UsersTable"])
        yield client


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
    assert document.sms_marketing.granted is True
    [event] = users.consent_history("42")
    assert event.model_dump(mode="json") == {
        "kind": "sms_marketing",
        "granted": True,
        "at": "2026-11-30T12:00:00Z",
        "source": "api; user-agent: ShopApp/4.2 (iOS 19)",
        "wording_version": "sms-v3",
        "phone": "+14155552671",
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
