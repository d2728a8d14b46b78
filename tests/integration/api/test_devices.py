"""`PUT` / `DELETE /v1/me/devices/{token}` through the template's routes and JWT authorizer, on moto
(herald.devices: one owner per token, decision 017)."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError

from herald.devices import Devices
from herald.directory import Directory, UserUpserted
from herald.stores.dynamo import from_attributes, to_attributes
from herald.stores.keys import device_owner_key
from herald.stores.users import UserStore, profile_key
from herald.users import MAX_DEVICES_PER_USER
from tests.support.api import ApiClient, LambdaContext
from tests.support.stack import MotoStack

pytestmark = pytest.mark.integration

TOKEN = "fcm:APA91bH-e1x_Z2" + "k" * 150  # an FCM registration token's shape and length


def path(token: str) -> str:
    return f"/v1/me/devices/{token}"


def users_item(stack: MotoStack, key: dict[str, str]) -> dict[str, Any] | None:
    item = (
        stack.client("dynamodb")
        .get_item(TableName=stack.tables["UsersTable"], Key=to_attributes(key), ConsistentRead=True)
        .get("Item")
    )
    return from_attributes(item) if item else None


def devices_of(stack: MotoStack, user_id: str) -> dict[str, Any]:
    item = users_item(stack, profile_key(user_id)) or {}
    return item.get("devices", {})


def owner_of(stack: MotoStack, token: str) -> str | None:
    item = users_item(stack, device_owner_key(token))
    return item["user_id"] if item else None


# -- PUT ------------------------------------------------------------------------------------------


def test_a_device_is_registered_on_the_profile_the_router_reads(api: ApiClient, stack: MotoStack) -> None:
    # WHEN the app registers its token
    answer = api.put(path(TOKEN), json={"platform": "android", "app_version": "4.2.0", "locale": "pt_br"})

    # THEN the device is on the caller's profile, the token names its owner
    assert answer.status == 200
    assert answer.json["platform"] == "android"
    assert (answer.json["app_version"], answer.json["locale"]) == ("4.2.0", "pt-BR")
    profile = UserStore(stack.client("dynamodb"), stack.tables["UsersTable"]).get_profile("u1")
    assert profile is not None and profile.user_id == "u1"
    device = profile.devices[TOKEN]
    assert (device.platform, device.app_version, device.locale) == ("android", "4.2.0", "pt-BR")
    assert owner_of(stack, TOKEN) == "u1"


def test_a_repeated_put_changes_nothing_but_the_registration_time(api: ApiClient, stack: MotoStack) -> None:
    first = api.put(path(TOKEN), json={"platform": "ios"})
    again = api.put(path(TOKEN), json={"platform": "ios"})

    assert (first.status, again.status) == (200, 200)
    devices = devices_of(stack, "u1")
    assert list(devices) == [TOKEN]
    assert devices[TOKEN]["platform"] == "ios"
    assert devices[TOKEN]["registered_at"] == again.json["registered_at"] >= first.json["registered_at"]
    assert owner_of(stack, TOKEN) == "u1"


def test_a_registration_before_the_directory_sync_survives_the_later_upsert(
    api: ApiClient, stack: MotoStack
) -> None:
    # GIVEN an app that signed in before the directory synced the person (no profile item yet)
    assert users_item(stack, profile_key("u7")) is None
    assert api.put(path(TOKEN), json={"platform": "web"}, user="u7").status == 200
    assert users_item(stack, profile_key("u7"))["user_id"] == "u7"  # type: ignore[index]

    # WHEN the directory's UserUpserted arrives
    directory = Directory(stack.client("dynamodb"), stack.tables["UsersTable"])
    assert directory.apply(UserUpserted(user_id="u7", version=1, email="u7@example.com"))

    # THEN the profile has the directory's fields and keeps the device
    profile = UserStore(stack.client("dynamodb"), stack.tables["UsersTable"]).get_profile("u7")
    assert profile is not None and profile.email == "u7@example.com"
    assert set(profile.devices) == {TOKEN}


def test_a_token_registered_by_another_person_moves_to_the_new_one(api: ApiClient, stack: MotoStack) -> None:
    # GIVEN a shared tablet: u1 registered it
    api.put(path(TOKEN), json={"platform": "android"}, user="u1")
    api.put(path("u1-phone"), json={"platform": "ios"}, user="u1")

    # WHEN u2 signs in on it and registers the same token
    answer = api.put(path(TOKEN), json={"platform": "android"}, user="u2")

    # THEN only u2 holds it: never delivered to both
    assert answer.status == 200
    assert set(devices_of(stack, "u2")) == {TOKEN}
    assert set(devices_of(stack, "u1")) == {"u1-phone"}
    assert owner_of(stack, TOKEN) == "u2"
    # and u1 can no longer remove it from u2
    assert api.delete(path(TOKEN), user="u1").status == 404
    assert set(devices_of(stack, "u2")) == {TOKEN}


def test_at_the_cap_the_oldest_registration_is_evicted(api: ApiClient, stack: MotoStack) -> None:
    # GIVEN a person with as many devices as allowed
    tokens = [f"tok-{i:02d}" for i in range(MAX_DEVICES_PER_USER)]
    for token in tokens:
        assert api.put(path(token), json={"platform": "android"}).status == 200
    api.put(path("tok-00"), json={"platform": "android"})  # re-registered: now the newest

    # WHEN one more registers
    answer = api.put(path("tok-new"), json={"platform": "ios"})

    # THEN it is accepted and the least recently registered one (tok-01) made room, owner item too
    assert answer.status == 200
    devices = devices_of(stack, "u1")
    assert len(devices) == MAX_DEVICES_PER_USER
    assert "tok-new" in devices and "tok-00" in devices and "tok-01" not in devices
    assert owner_of(stack, "tok-01") is None
    assert owner_of(stack, "tok-new") == "u1"


@pytest.mark.parametrize(
    ("token", "body", "where"),
    [
        ("tok-1", {"platform": "blackberry"}, ["body", "platform"]),
        ("tok-1", {"platform": "ios", "locale": "not a locale"}, ["body", "locale"]),
        ("tok-1", {"platform": "ios", "owner": "u2"}, ["body", "owner"]),
        ("tok%201", {"platform": "ios"}, ["path", "token"]),  # a space
        ("t" * 4097, {"platform": "ios"}, ["path", "token"]),
    ],
)
def test_an_invalid_registration_is_422_with_the_field(
    api: ApiClient, stack: MotoStack, token: str, body: dict[str, Any], where: list[str]
) -> None:
    answer = api.put(path(token), json=body)

    assert answer.status == 422
    assert answer.json["error"]["code"] == "validation_error"
    assert where in [d["loc"] for d in answer.json["error"]["details"]]
    assert devices_of(stack, "u1") == {}


def test_the_token_is_percent_decoded_from_the_raw_path_as_api_gateway_sends_it(
    api: ApiClient, stack: MotoStack
) -> None:
    # GIVEN the event API Gateway sends: rawPath keeps the app's percent-encoding (the local HTTP API
    # decodes it, so the event is replayed with AWS's raw path)
    api.put(path("seed"), json={"platform": "ios"})
    event = dict(api.events[-1])

    def put(raw_token: str) -> dict[str, Any]:
        replay = {**event, "rawPath": path(raw_token), "pathParameters": {"token": raw_token}}
        return api.module.lambda_handler(replay, LambdaContext())

    # WHEN an FCM token's colon arrives encoded, and an encoded slash arrives
    colon = put("fcm%3Aabc")
    slash = put("tok%2F1")

    # THEN the token is stored decoded; a slash is refused
    assert colon["statusCode"] == 200
    assert "fcm:abc" in devices_of(stack, "u1")
    assert slash["statusCode"] == 422
    assert "tok/1" not in devices_of(stack, "u1")


def test_the_longest_token_allowed_is_accepted(api: ApiClient, stack: MotoStack) -> None:
    assert api.put(path("t" * 4096), json={"platform": "web"}).status == 200
    assert set(devices_of(stack, "u1")) == {"t" * 4096}


# -- DELETE ---------------------------------------------------------------------------------------


def test_a_device_is_removed_and_a_repeat_answers_alike(api: ApiClient, stack: MotoStack) -> None:
    api.put(path(TOKEN), json={"platform": "android"})
    api.put(path("other"), json={"platform": "ios"})

    first = api.delete(path(TOKEN))
    again = api.delete(path(TOKEN))

    assert (first.status, again.status) == (204, 204)
    assert first.body == b""
    assert set(devices_of(stack, "u1")) == {"other"}
    assert owner_of(stack, TOKEN) is None


def test_another_persons_token_is_404_and_stays_theirs(api: ApiClient, stack: MotoStack) -> None:
    api.put(path(TOKEN), json={"platform": "android"}, user="u2")

    answer = api.delete(path(TOKEN), user="u1")

    assert answer.status == 404
    assert answer.json["error"]["code"] == "not_found"
    assert set(devices_of(stack, "u2")) == {TOKEN}
    assert owner_of(stack, TOKEN) == "u2"


def test_an_unknown_token_is_404_like_another_persons(api: ApiClient) -> None:
    answer = api.delete(path("never-registered"))

    assert answer.status == 404
    assert answer.json["error"]["code"] == "not_found"


def test_a_removed_token_can_be_registered_by_someone_else(api: ApiClient, stack: MotoStack) -> None:
    api.put(path(TOKEN), json={"platform": "android"}, user="u1")
    api.delete(path(TOKEN), user="u1")

    assert api.put(path(TOKEN), json={"platform": "android"}, user="u2").status == 200
    assert api.delete(path(TOKEN), user="u1").status == 204  # u1's own repeat, u2 untouched
    assert set(devices_of(stack, "u2")) == {TOKEN}
    assert owner_of(stack, TOKEN) == "u2"


# -- authorization --------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["PUT", "DELETE"])
@pytest.mark.parametrize("credentials", ["none", "expired"])
def test_without_a_valid_token_it_is_401_and_nothing_changes(
    api: ApiClient, stack: MotoStack, method: str, credentials: str
) -> None:
    api.put(path(TOKEN), json={"platform": "android"}, user="u1")
    token = api.issuer.token("u1", ttl=-10) if credentials == "expired" else None

    answer = api.request(method, path(TOKEN), user=None, token=token, json={"platform": "ios"})

    assert answer.status == 401
    assert devices_of(stack, "u1")[TOKEN]["platform"] == "android"


# -- races (the domain, on the same moto tables) ------------------------------------------------------


class RaceBeforeFirstWrite:
    """A DynamoDB client that lets another registration in just before the first transaction."""

    def __init__(self, client: Any, race: Any) -> None:
        self._client = client
        self._race = race
        self.transactions = 0

    def transact_write_items(self, **kwargs: Any) -> Any:
        self.transactions += 1
        if self._race is not None:
            race, self._race = self._race, None
            race()
        return self._client.transact_write_items(**kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


def test_a_registration_that_loses_a_race_reads_again_and_still_leaves_one_owner(stack: MotoStack) -> None:
    # GIVEN u1 holds the token, and u3 registers it while u2's registration is between read and write
    client, table = stack.client("dynamodb"), stack.tables["UsersTable"]
    Devices(client, table).register("u1", TOKEN, "android")
    racing = RaceBeforeFirstWrite(client, lambda: Devices(client, table).register("u3", TOKEN, "ios"))

    # WHEN u2's registration goes on
    Devices(racing, table).register("u2", TOKEN, "android")

    # THEN its first transaction was refused, the retry took the token from u3: one holder only
    assert racing.transactions == 2
    holders = [u for u in ("u1", "u2", "u3") if TOKEN in devices_of(stack, u)]
    assert holders == ["u2"]
    assert owner_of(stack, TOKEN) == "u2"


def test_a_stale_owner_registering_again_mid_move_still_leaves_one_holder(stack: MotoStack) -> None:
    # GIVEN u1's token was taken off u1's map by the older profile-only removal (the owner item still
    # names u1: stale), and u1 registers it again while u2's registration is between read and write
    client, table = stack.client("dynamodb"), stack.tables["UsersTable"]
    Devices(client, table).register("u1", TOKEN, "android")
    UserStore(client, table).remove_device("u1", TOKEN)
    assert (owner_of(stack, TOKEN), TOKEN in devices_of(stack, "u1")) == ("u1", False)
    racing = RaceBeforeFirstWrite(client, lambda: Devices(client, table).register("u1", TOKEN, "android"))

    # WHEN u2's registration goes on
    Devices(racing, table).register("u2", TOKEN, "ios")

    # THEN u2's first transaction was refused (u1's map holds the token again), the retry moved it:
    # one holder, the one the owner item names
    assert racing.transactions == 2
    holders = [u for u in ("u1", "u2") if TOKEN in devices_of(stack, u)]
    assert holders == ["u2"]
    assert owner_of(stack, TOKEN) == "u2"


def test_a_dead_token_leaves_the_map_and_the_owner_item_forgets_the_person(stack: MotoStack) -> None:
    # GIVEN u1 holds two tokens
    client, table = stack.client("dynamodb"), stack.tables["UsersTable"]
    devices = Devices(client, table)
    devices.register("u1", TOKEN, "android")
    devices.register("u1", "fcm:other", "ios")

    # WHEN the push sender drops the dead one (twice: a redelivered message)
    devices.drop_dead("u1", TOKEN)
    devices.drop_dead("u1", TOKEN)

    # THEN it is gone from the map, and its owner item names nobody (and no one else is touched)
    assert list(devices_of(stack, "u1")) == ["fcm:other"]
    assert owner_of_item(stack, TOKEN) == {**device_owner_key(TOKEN)}
    assert owner_of(stack, "fcm:other") == "u1"
    # and anyone may register it afterwards, with one holder
    devices.register("u2", TOKEN, "android")
    assert (owner_of(stack, TOKEN), TOKEN in devices_of(stack, "u2")) == ("u2", True)


def test_a_dead_token_that_moved_on_is_only_dropped_from_the_old_map(stack: MotoStack) -> None:
    # GIVEN u1's token moved to u2 (a shared tablet) and then (an older stale state) u1's map held it
    client, table = stack.client("dynamodb"), stack.tables["UsersTable"]
    devices = Devices(client, table)
    devices.register("u1", TOKEN, "android")
    devices.register("u2", TOKEN, "android")
    UserStore(client, table).register_device("u1", TOKEN, "android")  # the old two-map path

    # WHEN a push to u1 finds it dead
    devices.drop_dead("u1", TOKEN)

    # THEN u1's map loses it; u2's owner item and map are untouched
    assert TOKEN not in devices_of(stack, "u1")
    assert (owner_of(stack, TOKEN), TOKEN in devices_of(stack, "u2")) == ("u2", True)


def owner_of_item(stack: MotoStack, token: str) -> dict[str, Any] | None:
    return users_item(stack, device_owner_key(token))


def test_a_removal_refused_by_the_store_is_an_error_not_a_404(stack: MotoStack) -> None:
    # GIVEN a client whose transactions fail for another reason than a condition
    client, table = stack.client("dynamodb"), stack.tables["UsersTable"]
    Devices(client, table).register("u1", TOKEN, "android")

    class Throttled(RaceBeforeFirstWrite):
        def transact_write_items(self, **kwargs: Any) -> Any:
            raise ClientError({"Error": {"Code": "ThrottlingException", "Message": "slow down"}}, "Transact")

    # WHEN / THEN the error surfaces (a 500 to retry), the device stays
    with pytest.raises(ClientError):
        Devices(Throttled(client, None), table).remove("u1", TOKEN)
    assert TOKEN in devices_of(stack, "u1")
