"""The person's preferences (herald.preferences) and the `own` overlay of the profile item
(herald.stores.users, decision 016). moto in-process (`mock_aws`: no socket) stands in for the
Users table, created from template.yaml's definition."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, time
from typing import Any

import pytest
from pydantic import ValidationError

from herald.directory import Directory, UserDeleted, UserUpserted
from herald.models import Category, Channel
from herald.preferences import PreferencesService, PreferencesUpdate, effective_document
from herald.stores.users import OwnChange, PersonErased, UserStore, profile_from_item
from herald.users import UserProfile
from tests.unit.conftest import USERS_TABLE

pytestmark = pytest.mark.unit

TABLE = USERS_TABLE
NOW = 1_800_000_000.0


@pytest.fixture
def users(dynamodb: Any) -> UserStore:
    return UserStore(dynamodb, TABLE)


@pytest.fixture
def directory(dynamodb: Any) -> Directory:
    return Directory(dynamodb, TABLE)


@pytest.fixture
def service(users: UserStore) -> PreferencesService:
    return PreferencesService(users)


def upserted(version: int, **fields: Any) -> UserUpserted:
    return UserUpserted.model_validate({"user_id": "42", "version": version, **fields})


def errors_of(document: dict[str, Any]) -> dict[tuple[str, ...], str]:
    with pytest.raises(ValidationError) as raised:
        PreferencesUpdate.model_validate(document)
    return {tuple(str(p) for p in e["loc"]): e["type"] for e in raised.value.errors()}


def raw_item(dynamodb: Any, sk: str = "PROFILE", user_id: str = "42") -> dict[str, Any] | None:
    from herald.stores.dynamo import from_attributes

    item = dynamodb.get_item(TableName=TABLE, Key={"pk": {"S": f"USER#{user_id}"}, "sk": {"S": sk}}).get(
        "Item"
    )
    return from_attributes(item) if item else None


# -- the document's validation -------------------------------------------------------------------


def test_every_problem_of_a_document_is_a_field_error_with_its_location() -> None:
    found = errors_of(
        {
            "channels": {"push": False, "webhook": True},
            "muted_categories": ["marketing", "security", "system"],
            "muted_types": ["comment_reply", "security_alert", "order_webhook", "no_such_type"],
            "muted_channels": {"transactional": ["email", "webhook"], "security": ["sms"]},
            "quiet_hours": {"start": "22:00", "end": "22:00"},
            "time_zone": "Mars/Olympus_Mons",
            "locale": "not a locale",
            "user_id": "someone-else",
        }
    )

    assert found == {
        ("channels", "webhook"): "extra_forbidden",
        ("muted_categories", "1"): "cannot_mute",
        ("muted_categories", "2"): "cannot_mute",
        ("muted_types", "1"): "cannot_mute",
        ("muted_types", "2"): "cannot_mute",
        ("muted_types", "3"): "unknown_type",
        ("muted_channels", "transactional", "1"): "not_a_person_channel",
        ("muted_channels", "security", "[key]"): "cannot_mute",
        ("quiet_hours", "end"): "empty_window",
        ("time_zone",): "unknown_time_zone",
        ("locale",): "invalid_locale",
        ("user_id",): "extra_forbidden",
    }


@pytest.mark.parametrize("zone", ["localtime", "Europe/Nowhere", "../etc/passwd", "UTC+2"])
def test_only_iana_zone_names_are_accepted(zone: str) -> None:
    assert errors_of({"time_zone": zone}) == {("time_zone",): "unknown_time_zone"}


def test_null_is_refused_where_it_means_nothing_and_quiet_hours_null_means_none() -> None:
    assert errors_of({"time_zone": None, "channels": None, "muted_types": None}) == {
        ("time_zone",): "string_type",
        ("channels",): "model_type",
        ("muted_types",): "list_type",
    }
    assert PreferencesUpdate.model_validate({"quiet_hours": None}).choices() == {"quiet_hours": None}


def test_quiet_hours_are_wall_times_of_the_persons_zone() -> None:
    assert errors_of({"quiet_hours": {"start": "22:00+02:00", "end": "07:00"}}) == {
        ("quiet_hours", "start"): "wall_time"
    }


def test_a_document_keeps_only_what_the_person_sent_normalized() -> None:
    update = PreferencesUpdate.model_validate(
        {
            "channels": {"sms": False},
            "muted_types": ["comment_reply", "comment_reply"],
            "muted_channels": {"marketing": ["sms", "email", "sms"], "transactional": []},
            "locale": "pt_br",
            "time_zone": "America/Sao_Paulo",
            "quiet_hours": {"start": "23:30", "end": "06:00"},
        }
    )

    assert update.choices() == {
        "preferences": {
            "channels": {"sms": False},
            "muted_types": ["comment_reply"],
            "muted_channels": {"marketing": ["email", "sms"]},  # an empty row says nothing
        },
        "quiet_hours": {"start": "23:30:00", "end": "06:00:00"},
        "time_zone": "America/Sao_Paulo",
        "locale": "pt-BR",
    }


# -- the overlay ---------------------------------------------------------------------------------


def test_the_persons_choices_win_over_the_directory_field_by_field() -> None:
    item = {
        "pk": "USER#42",
        "sk": "PROFILE",
        "user_id": "42",
        "email": "d@example.com",
        "time_zone": "Europe/Paris",
        "quiet_hours": {"start": "22:00", "end": "07:00"},
        "preferences": {
            "channels": {"sms": False, "email": False},
            "muted_categories": ["marketing"],
            "marketing_opt_in": True,
        },
        "own": {
            "revision": 3,
            "preferences": {"channels": {"email": True, "push": False}, "muted_categories": []},
            "quiet_hours": None,
            "locale": "fr",
        },
    }

    profile = profile_from_item(item)

    assert profile.preferences.channels == {Channel.SMS: False, Channel.EMAIL: True, Channel.PUSH: False}
    assert profile.preferences.muted_categories == frozenset()  # theirs: nothing muted
    assert profile.preferences.marketing_opt_in is True  # not set by them: the directory's
    assert profile.quiet_hours is None  # their explicit "no quiet hours"
    assert (profile.time_zone, profile.locale, profile.email) == ("Europe/Paris", "fr", "d@example.com")


def test_a_malformed_own_map_fails_the_profile_rather_than_being_ignored() -> None:
    # Ignoring it could mean ignoring a withdrawn consent: the router skips a broken profile instead.
    with pytest.raises(ValidationError):
        profile_from_item({"user_id": "42", "own": {"sms_marketing_consent": {"given_at": "yesterday"}}})


def test_the_effective_document_leaves_out_mutes_the_router_ignores_and_round_trips() -> None:
    profile = UserProfile.model_validate(
        {
            "user_id": "42",
            "locale": "es_mx",
            "quiet_hours": {"start": "21:00", "end": "08:00"},
            "preferences": {
                "channels": {"push": False, "webhook": False},
                "muted_categories": ["security", "marketing"],
                "muted_types": ["security_alert", "gone_from_the_catalog", "comment_reply"],
                "muted_channels": {
                    "security": ["sms"],
                    "transactional": ["webhook", "email"],
                    "system": ["email"],
                },
            },
        }
    )

    document = effective_document(profile)

    assert document.channels.model_dump() == {"email": True, "push": False, "sms": True, "realtime": True}
    assert document.muted_categories == [Category.MARKETING]
    assert document.muted_types == ["comment_reply"]
    assert document.muted_channels == {Category.TRANSACTIONAL: [Channel.EMAIL]}
    assert document.quiet_hours is not None and document.quiet_hours.start == time(21, 0)
    assert document.locale == "es-MX"
    assert PreferencesUpdate.model_validate(document.model_dump(mode="json"))  # valid as a PUT


# -- the store -----------------------------------------------------------------------------------


def test_a_person_unknown_to_herald_reads_the_product_defaults(service: PreferencesService) -> None:
    document = service.get("nobody")

    assert document.channels.model_dump() == {"email": True, "push": True, "sms": True, "realtime": True}
    assert (document.time_zone, document.locale, document.quiet_hours) == ("UTC", "en", None)


def test_a_put_before_the_directory_sync_creates_the_item_and_the_sync_fills_in_the_rest(
    service: PreferencesService, users: UserStore, directory: Directory, dynamodb: Any
) -> None:
    service.replace(
        "42", PreferencesUpdate.model_validate({"channels": {"push": False}, "time_zone": "Asia/Tokyo"})
    )
    created = raw_item(dynamodb)
    assert (
        created is not None and created["user_id"] == "42" and set(created) == {"pk", "sk", "user_id", "own"}
    )

    directory.apply(upserted(1, email="d@example.com", time_zone="Europe/Paris", roles=["admin"]), now=NOW)

    profile = users.get_profile("42")
    assert profile is not None
    assert profile.email == "d@example.com"  # the directory's part
    assert profile.time_zone == "Asia/Tokyo"  # the person's choice wins
    assert profile.preferences.channel_enabled(Channel.PUSH) is False
    assert list(users.iter_user_ids_with_role("admin")) == ["42"]


def test_a_later_upsert_never_erases_the_persons_choices(
    service: PreferencesService, users: UserStore, directory: Directory
) -> None:
    directory.apply(upserted(1, quiet_hours={"start": "22:00", "end": "07:00"}), now=NOW)
    service.replace(
        "42", PreferencesUpdate.model_validate({"quiet_hours": None, "muted_types": ["order_shipped"]})
    )

    applied = directory.apply(
        upserted(
            2,
            quiet_hours={"start": "20:00", "end": "09:00"},
            preferences={"muted_types": ["comment_reply"], "marketing_opt_in": True},
        ),
        now=NOW + 1,
    )

    assert applied is True
    profile = users.get_profile("42")
    assert profile is not None
    assert profile.quiet_hours is None
    assert profile.preferences.muted_types == frozenset({"order_shipped"})
    assert profile.preferences.marketing_opt_in is True  # never set by the person: the directory's


def test_an_omitted_field_hands_it_back_to_the_directory(
    service: PreferencesService, users: UserStore, directory: Directory
) -> None:
    directory.apply(upserted(1, locale="de", time_zone="Europe/Berlin"), now=NOW)
    service.replace("42", PreferencesUpdate.model_validate({"locale": "it", "time_zone": "Europe/Rome"}))

    document = service.replace("42", PreferencesUpdate.model_validate({"locale": "it"}))

    assert (document.locale, document.time_zone) == ("it", "Europe/Berlin")


def test_replacing_preferences_keeps_the_persons_contacts(
    service: PreferencesService, users: UserStore
) -> None:
    users.edit_own("42", lambda own, _: OwnChange(choices={**own, "phone": "+14155552671"}))

    service.replace("42", PreferencesUpdate.model_validate({"locale": "fr"}))

    profile = users.get_profile("42")
    assert profile is not None and (profile.phone, profile.locale) == ("+14155552671", "fr")


def test_the_same_put_twice_writes_once(service: PreferencesService, dynamodb: Any) -> None:
    calls: Counter[str] = Counter()
    dynamodb.meta.events.register("before-call.dynamodb.*", lambda model, **_: calls.update([model.name]))
    update = PreferencesUpdate.model_validate({"muted_types": ["order_shipped", "comment_reply"]})

    first = service.replace("42", update)
    second = service.replace("42", update)

    assert first == second
    assert calls["TransactWriteItems"] == 1
    assert raw_item(dynamodb)["own"]["revision"] == 1  # type: ignore[index]


def test_a_concurrent_edit_is_read_again_not_lost(users: UserStore) -> None:
    interleaved = []

    def slow_edit(own: dict[str, Any], _current: Any) -> OwnChange:
        if not interleaved:  # another request lands between this one's read and its write
            interleaved.append(users.edit_own("42", lambda o, _: OwnChange(choices={**o, "locale": "nl"})))
        return OwnChange(choices={**own, "time_zone": "Europe/Amsterdam"})

    profile = users.edit_own("42", slow_edit)

    assert (profile.locale, profile.time_zone) == ("nl", "Europe/Amsterdam")
    stored = users.get_profile("42")
    assert stored is not None and (stored.locale, stored.time_zone) == ("nl", "Europe/Amsterdam")


def test_an_erased_person_is_not_recreated_by_their_app(
    service: PreferencesService, users: UserStore, directory: Directory, dynamodb: Any
) -> None:
    directory.apply(upserted(1), now=NOW)
    directory.apply(UserDeleted(user_id="42", version=2), now=NOW + 1)

    with pytest.raises(PersonErased):
        service.replace("42", PreferencesUpdate.model_validate({"locale": "fr"}))

    assert raw_item(dynamodb) is None
    assert users.get_profile("42") is None


def test_a_profile_the_router_could_not_read_is_never_written(users: UserStore, dynamodb: Any) -> None:
    with pytest.raises(ValidationError):
        users.edit_own("42", lambda own, _: OwnChange(choices={**own, "time_zone": "Not/AZone"}))

    assert raw_item(dynamodb) is None


def test_the_write_is_stamped_with_the_servers_time(users: UserStore, dynamodb: Any) -> None:
    at = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)

    users.edit_own("42", lambda own, _: OwnChange(choices={**own, "locale": "fr"}), now=at)

    assert raw_item(dynamodb)["own"]["updated_at"] == "2026-11-30T12:00:00Z"  # type: ignore[index]
