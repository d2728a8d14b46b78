"""Directory events applied in the producer's version order (herald.directory, decision 014).

Moto in-process (`mock_aws` patches botocore: no socket is opened) stands in for the Users table.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import ValidationError

from herald.directory import Directory, DirectoryRecord, UserDeleted, UserUpserted
from herald.models import Channel
from herald.stores.users import UserStore
from herald.users import UserProfile
from tests.support.sqs import sqs_record
from tests.unit.conftest import USERS_TABLE

pytestmark = pytest.mark.unit

TABLE = USERS_TABLE
NOW = 1_800_000_000.0


@pytest.fixture
def directory(dynamodb: Any) -> Directory:
    return Directory(dynamodb, TABLE, tombstone_days=30)


@pytest.fixture
def users(dynamodb: Any) -> UserStore:
    return UserStore(dynamodb, TABLE)


def upserted(version: int, **fields: Any) -> UserUpserted:
    return UserUpserted.model_validate({"user_id": "42", "version": version, **fields})


def test_an_upsert_creates_the_profile_the_router_reads(directory: Directory, users: UserStore) -> None:
    # GIVEN an unknown person WHEN the directory applies their first upsert
    applied = directory.apply(
        upserted(
            1,
            email="Ada@Example.com",
            phone="+14155550100",
            locale="en-GB",
            time_zone="Europe/London",
            roles=["admin"],
            preferences={"channels": {"sms": False}, "muted_categories": ["marketing"]},
            sms_marketing_consent={"given_at": "2026-11-01T09:30:00Z", "source": "web-signup"},
        ),
        now=NOW,
    )

    # THEN the profile reads back through the store the router and senders use
    assert applied is True
    profile = users.get_profile("42")
    assert profile is not None
    assert (profile.email, profile.phone, profile.locale, profile.time_zone) == (
        "ada@example.com",
        "+14155550100",
        "en-GB",
        "Europe/London",
    )
    assert profile.roles == {"admin"}
    assert profile.preferences.channel_enabled(Channel.SMS) is False
    assert profile.sms_marketing_consent is not None
    assert list(users.iter_user_ids_with_role("admin")) == ["42"]
    assert directory.stored_version("42") == 1


def test_an_older_event_never_overwrites_a_newer_one(directory: Directory, users: UserStore) -> None:
    directory.apply(upserted(5, email="new@example.com", roles=["admin"]), now=NOW)

    applied = directory.apply(upserted(4, email="old@example.com", roles=["support"]), now=NOW)

    assert applied is False
    profile = users.get_profile("42")
    assert profile is not None and profile.email == "new@example.com"
    assert list(users.iter_user_ids_with_role("support")) == []
    assert directory.stored_version("42") == 5


def test_a_repeat_changes_nothing(directory: Directory, dynamodb: Any) -> None:
    directory.apply(upserted(3, email="a@example.com"), now=NOW)
    before = dynamodb.scan(TableName=TABLE)["Items"]

    applied = directory.apply(upserted(3, email="a@example.com"), now=NOW + 60)

    assert applied is False
    assert dynamodb.scan(TableName=TABLE)["Items"] == before


def test_a_newer_upsert_replaces_the_entry_and_keeps_the_devices(
    directory: Directory, users: UserStore
) -> None:
    # GIVEN a person with a phone, a role and a device registered by their app
    directory.apply(upserted(1, phone="+14155550100", roles=["admin"]), now=NOW)
    users.register_device("42", "tok-1", "ios")

    # WHEN a newer version drops the phone and changes the role
    assert directory.apply(upserted(2, email="b@example.com", roles=["support"]), now=NOW) is True

    # THEN the absent phone is cleared, the memberships follow, the device stays
    profile = users.get_profile("42")
    assert profile is not None
    assert (profile.phone, profile.email, profile.roles) == (None, "b@example.com", {"support"})
    assert set(profile.devices) == {"tok-1"}
    assert list(users.iter_user_ids_with_role("admin")) == []
    assert list(users.iter_user_ids_with_role("support")) == ["42"]


def test_a_delete_then_an_older_upsert_stays_deleted(directory: Directory, users: UserStore) -> None:
    directory.apply(upserted(1, email="a@example.com", roles=["admin"]), now=NOW)
    users.register_device("42", "tok-1", "android")

    assert directory.apply(UserDeleted(user_id="42", version=2), now=NOW) is True
    late = directory.apply(upserted(1, email="a@example.com", roles=["admin"]), now=NOW)

    assert late is False
    assert users.get_profile("42") is None
    assert list(users.iter_user_ids_with_role("admin")) == []
    assert directory.is_deleted("42") is True
    assert directory.stored_version("42") == 2


def test_the_tombstone_expires_by_ttl(directory: Directory, dynamodb: Any) -> None:
    directory.apply(UserDeleted(user_id="42", version=9), now=NOW)

    item = dynamodb.get_item(TableName=TABLE, Key={"pk": {"S": "USER#42"}, "sk": {"S": "DIRECTORY"}})["Item"]

    assert int(item["expires_at"]["N"]) == int(NOW) + 30 * 86400
    assert int(item["version"]["N"]) == 9


def test_a_newer_upsert_after_a_delete_recreates_the_person(directory: Directory, users: UserStore) -> None:
    directory.apply(upserted(1, email="a@example.com"), now=NOW)
    users.register_device("42", "tok-1", "android")
    directory.apply(UserDeleted(user_id="42", version=2), now=NOW)

    assert directory.apply(upserted(3, email="back@example.com"), now=NOW) is True

    profile = users.get_profile("42")
    assert profile is not None and profile.email == "back@example.com"
    assert profile.devices == {}, "the devices went with the deletion"
    assert directory.is_deleted("42") is False
    users.register_device("42", "tok-2", "ios")  # the recreated profile takes devices again
    assert set(users.get_profile("42").devices) == {"tok-2"}  # type: ignore[union-attr]


def test_a_delete_of_an_unknown_person_still_blocks_older_upserts(
    directory: Directory, users: UserStore
) -> None:
    assert directory.apply(UserDeleted(user_id="42", version=4), now=NOW) is True

    assert directory.apply(upserted(3, email="a@example.com"), now=NOW) is False
    assert users.get_profile("42") is None


def test_a_repeated_delete_is_a_no_op(directory: Directory) -> None:
    directory.apply(UserDeleted(user_id="42", version=4), now=NOW)

    assert directory.apply(UserDeleted(user_id="42", version=4), now=NOW + 1) is False


@pytest.mark.parametrize(
    ("detail", "field"),
    [
        ({"user_id": "42"}, "version"),
        ({"user_id": "42", "version": "7"}, "version"),
        ({"user_id": "42", "version": -1}, "version"),
        ({"user_id": "42", "version": 1, "time_zone": "Mars/Olympus"}, "time_zone"),
        ({"user_id": "42", "version": 1, "phone": "0155"}, "phone"),
        ({"user_id": "42", "version": 1, "devices": {}}, "devices"),
        ({"user_id": "", "version": 1}, "user_id"),
    ],
)
def test_an_invalid_upsert_names_the_field(detail: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as raised:
        UserUpserted.model_validate(detail)

    assert field in {str(e["loc"][0]) for e in raised.value.errors()}


def test_the_record_picks_the_model_by_detail_type() -> None:
    envelope = {
        "detail-type": "UserDeleted",
        "source": "s",
        "id": "1",
        "version": "0",
        "time": "2026-11-30T12:00:00Z",
        "detail": {"user_id": "42", "version": 2},
    }
    record = DirectoryRecord.model_validate(sqs_record(json.dumps(envelope)))

    assert isinstance(record.body.detail, UserDeleted)
    envelope["detail"] = {"user_id": "42", "version": 2, "email": "a@b.c"}
    with pytest.raises(ValidationError):  # an upsert's fields are not a delete
        DirectoryRecord.model_validate(sqs_record(json.dumps(envelope)))


def test_the_profile_model_is_the_directory_part_plus_devices() -> None:
    assert set(UserProfile.model_fields) - set(UserUpserted.model_fields) == {"devices"}


@pytest.mark.parametrize("model", [UserUpserted, UserDeleted])
def test_a_user_id_in_heralds_reserved_namespace_is_refused(model: type) -> None:
    """`#...` partitions are Herald's own (held requests live under `#held#<name>`)."""
    with pytest.raises(ValidationError):
        model.model_validate({"user_id": "#held#sched-1", "version": 1})
    assert model.model_validate({"user_id": "a#b", "version": 1}).user_id == "a#b"
