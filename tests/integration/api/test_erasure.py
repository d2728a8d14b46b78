"""Erasure of a person (herald.erasure, decision 017) through both doors: `DELETE /v1/me` (the API
function, through the template's routes and JWT authorizer) and the bus's `UserDeleted` (the
directory function's handler); then the router handler on the same moto stack."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from botocore.exceptions import ClientError

from herald.catalog import load_catalog
from herald.channels.context import DeliveryContext, Skip
from herald.channels.result import DEAD_TOKEN, Effects, PermanentFailure, SendResult
from herald.channels.sender import ChannelSender
from herald.delivery import DeliveryLedger
from herald.devices import Devices
from herald.directory import Directory, UserDeleted, UserUpserted
from herald.erasure import Erasure
from herald.messages import ChannelMessage
from herald.models import Category, Channel, Urgency
from herald.stores.dynamo import from_attributes, to_attributes
from herald.stores.keys import email_address, push_address, sms_address
from herald.stores.rate_counters import RateCounterStore
from herald.stores.suppression import SuppressionStore
from herald.stores.users import UserStore
from tests.integration.api.conftest import seed_notification
from tests.support.api import ApiClient
from tests.support.sqs import directory_body, sqs_event
from tests.support.stack import MotoStack, fresh_function_module

pytestmark = pytest.mark.integration

ANA = "ana-7f3c"  # distinctive: any item holding it is about her
BEN = "ben-91d2"


class Context:
    function_name = "herald-test"
    memory_limit_in_mb = 512
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:herald-test"
    aws_request_id = "req-erasure"

    @staticmethod
    def get_remaining_time_in_millis() -> int:
        return 30_000


def contacts_of(user_id: str) -> dict[str, str]:
    return {
        "email": f"{user_id}@example.com",
        "own_email": f"{user_id}.own@example.com",
        "phone": "+14155550100" if user_id == ANA else "+14155550111",
        "old_phone": "+14155550999" if user_id == ANA else "+14155550888",
        "phone_token": f"fcm:{user_id}-phone",
        "tablet_token": f"fcm:{user_id}-tablet",
    }


def upsert(stack: MotoStack, user_id: str, version: int) -> None:
    contacts = contacts_of(user_id)
    assert Directory(stack.client("dynamodb"), stack.tables["UsersTable"]).apply(
        UserUpserted.model_validate(
            {
                "user_id": user_id,
                "version": version,
                "email": contacts["email"],
                "phone": contacts["phone"],
                "roles": ["support"],
                "preferences": {"channels": {"sms": False}},
            }
        )
    )


def seed_person(stack: MotoStack, api: ApiClient, user_id: str) -> None:
    """Something of the person in every table: profile (directory part, own choices, devices), role,
    consent history, inbox watermark, notifications, presence, rate counters, suppressions."""
    contacts = contacts_of(user_id)
    client = stack.client("dynamodb")
    upsert(stack, user_id, version=1)
    for token in (contacts["phone_token"], contacts["tablet_token"]):
        assert api.put(f"/v1/me/devices/{token}", json={"platform": "android"}, user=user_id).status == 200
    client.update_item(  # what the person set through the API (herald.stores.users, decision 016)
        TableName=stack.tables["UsersTable"],
        Key=to_attributes({"pk": f"USER#{user_id}", "sk": "PROFILE"}),
        UpdateExpression="SET #own = :own",
        ExpressionAttributeNames={"#own": "own"},
        ExpressionAttributeValues=to_attributes(
            {
                ":own": {
                    "revision": 1,
                    "email": contacts["own_email"],
                    # Ana turned email off in the app; Ben did not
                    "preferences": {"channels": {"email": user_id != ANA}},
                }
            }
        ),
    )
    client.put_item(
        TableName=stack.tables["UsersTable"],
        Item=to_attributes(
            {
                "pk": f"USER#{user_id}",
                "sk": "CONSENTS",
                "user_id": user_id,
                "events": [
                    {
                        "granted": True,
                        "at": "2026-01-01T00:00:00Z",
                        "source": "api",
                        "phone": contacts["old_phone"],
                    }
                ],
            }
        ),
    )
    seed_notification(stack, user_id, f"{user_id}-ord-1")
    shipped = seed_notification(stack, user_id, f"{user_id}-ord-2")
    # the tablet's token died: FCM answered UNREGISTERED to a push, and the push sender suppressed
    # it and removed it from her profile (the sender's own code path, so what it keeps is tested)
    fcm_says_unregistered(stack, user_id, shipped, contacts["tablet_token"])
    assert api.post("/v1/me/notifications/read-all", user=user_id).status == 200
    now = datetime.now(UTC)
    client.put_item(
        TableName=stack.tables["PresenceTable"],
        Item=to_attributes(
            {
                "user_id": user_id,
                "occupied": True,
                "time_ms": int(now.timestamp() * 1000),
                "expires_at": 2_000_000_000,
            }
        ),
    )
    counters = RateCounterStore(client, stack.tables["RateCountersTable"])
    counters.add(user_id, Channel.EMAIL, now)
    counters.add(user_id, Channel.SMS, now - timedelta(hours=1))
    counters.add(user_id, Channel.PUSH, now - timedelta(hours=2))
    # and a counter of the shape before decision 030 (one item per channel), as an upgraded stack has
    client.put_item(
        TableName=stack.tables["RateCountersTable"],
        Item=to_attributes(
            {"pk": f"{user_id}#email#{(now - timedelta(hours=1)).strftime('%Y%m%d%H')}", "count": 2}
        ),
    )
    suppression = SuppressionStore(client, stack.tables["SuppressionTable"])
    suppression.suppress(email_address(contacts["email"]), "bounce", "ses", contact=contacts["email"])
    suppression.suppress(
        sms_address(contacts["old_phone"]), "opted_out", "twilio", contact=contacts["old_phone"]
    )


class DeadTokenPush:
    """A push deliverer whose provider answers that the token is dead (FCM's UNREGISTERED)."""

    channel = Channel.PUSH
    resend_stale_claims = False

    def deliver(self, context: DeliveryContext) -> SendResult | Skip:
        (token,) = context.message.device_tokens
        return PermanentFailure("fcm", "UNREGISTERED", code=DEAD_TOKEN, effects=Effects(dead_tokens=(token,)))


def fcm_says_unregistered(stack: MotoStack, user_id: str, notification_id: str, token: str) -> None:
    client = stack.client("dynamodb")
    sender = ChannelSender(
        DeadTokenPush(),
        ledger=DeliveryLedger(
            client, stack.tables["NotificationsTable"], users_table=stack.tables["UsersTable"]
        ),
        users=UserStore(client, stack.tables["UsersTable"]),
        suppression=SuppressionStore(client, stack.tables["SuppressionTable"]),
        devices=Devices(client, stack.tables["UsersTable"]),
        catalog=load_catalog(),
        sqs=stack.client("sqs"),
        queue_url="https://sqs.us-east-1.amazonaws.com/123456789012/unused",
    )
    message = ChannelMessage(
        notification_id=notification_id,
        event_id=f"{user_id}-ord-2",
        user_id=user_id,
        type="order_shipped",
        channel=Channel.PUSH,
        urgency=Urgency.MEDIUM,
        category=Category.TRANSACTIONAL,
        locale="en",
        device_tokens=[token],
    )
    assert sender.process(message).state == "not_delivered"
    assert token not in (UserStore(client, stack.tables["UsersTable"]).get_profile(user_id).devices)  # type: ignore[union-attr]


def every_item(stack: MotoStack) -> list[tuple[str, dict[str, Any]]]:
    """Every item of every table (a test may scan; Herald never does)."""
    found = []
    for logical, name in sorted(stack.tables.items()):
        paginator = stack.client("dynamodb").get_paginator("scan")
        for page in paginator.paginate(TableName=name, ConsistentRead=True):
            found += [(logical, from_attributes(item)) for item in page["Items"]]
    return found


def about(stack: MotoStack, user_id: str) -> list[tuple[str, dict[str, Any]]]:
    """Items that hold the person's id or any of their contacts, in any attribute."""
    needles = [user_id, *contacts_of(user_id).values()]
    return [
        (table, item)
        for table, item in every_item(stack)
        if any(needle in json.dumps(item, sort_keys=True, default=str) for needle in needles)
    ]


def suppression(stack: MotoStack, address: str) -> dict[str, Any] | None:
    item = (
        stack.client("dynamodb")
        .get_item(
            TableName=stack.tables["SuppressionTable"], Key={"address": {"S": address}}, ConsistentRead=True
        )
        .get("Item")
    )
    return from_attributes(item) if item else None


def erase_through_the_api(stack: MotoStack, api: ApiClient, user_id: str) -> None:
    answer = api.delete("/v1/me", user=user_id)
    assert answer.status == 204 and answer.body == b""


def erase_through_the_bus(stack: MotoStack, api: ApiClient, user_id: str) -> None:

    handler = fresh_function_module("functions.directory.app")
    event = sqs_event(directory_body("UserDeleted", {"user_id": user_id, "version": 2}))
    assert handler.lambda_handler(event, Context()) == {"batchItemFailures": []}


DOORS = {"DELETE /v1/me": erase_through_the_api, "UserDeleted": erase_through_the_bus}
Erase = Callable[[MotoStack, ApiClient, str], None]


@pytest.mark.parametrize("erase", DOORS.values(), ids=DOORS.keys())
def test_erasure_leaves_only_the_tombstone_and_hashed_suppressions(
    api: ApiClient, stack: MotoStack, erase: Erase
) -> None:
    # GIVEN two people with something in every table
    seed_person(stack, api, ANA)
    seed_person(stack, api, BEN)
    assert {table for table, _ in about(stack, ANA)} >= {
        "UsersTable",
        "NotificationsTable",
        "PresenceTable",
        "RateCountersTable",
        "SuppressionTable",
    }
    ben_before = about(stack, BEN)

    # WHEN Ana is erased
    erase(stack, api, ANA)

    # THEN nothing holds her id or a contact of hers but the directory's tombstone
    left = about(stack, ANA)
    assert [(table, item.get("sk")) for table, item in left] == [("UsersTable", "DIRECTORY")], left
    assert "deleted_at" in left[0][1]
    # her suppressions stay, keyed by hashes, without the plain contact
    contacts = contacts_of(ANA)
    kept = {
        "bounced email": (email_address(contacts["email"]), "bounce"),
        "own email, email off": (email_address(contacts["own_email"]), "opted_out"),
        "phone, sms off": (sms_address(contacts["phone"]), "opted_out"),
        "STOP on an old phone": (sms_address(contacts["old_phone"]), "opted_out"),
        "dead token": (push_address(contacts["tablet_token"]), "dead_token"),
    }
    for what, (address, reason) in kept.items():
        entry = suppression(stack, address)
        assert entry is not None, f"{what}: entry gone"
        assert entry["reason"] == reason, what
        assert "contact" not in entry, f"{what}: plain contact kept"
    assert suppression(stack, push_address(contacts["phone_token"])) is None, "a live token is not suppressed"
    # and Ben is untouched
    assert about(stack, BEN) == ben_before


@pytest.mark.parametrize("erase", DOORS.values(), ids=DOORS.keys())
def test_erasure_is_idempotent(api: ApiClient, stack: MotoStack, erase: Erase) -> None:
    seed_person(stack, api, ANA)
    erase(stack, api, ANA)
    after_first = every_item(stack)

    erase_through_the_api(stack, api, ANA)

    assert every_item(stack) == after_first


def test_an_erased_caller_cannot_write_again_until_a_newer_upsert(api: ApiClient, stack: MotoStack) -> None:
    # GIVEN Ana erased herself (her token is still valid)
    seed_person(stack, api, ANA)
    erase_through_the_api(stack, api, ANA)
    erased = every_item(stack)

    # WHEN her app registers a device / removes one
    put = api.put("/v1/me/devices/fcm:again", json={"platform": "ios"}, user=ANA)
    delete = api.delete(f"/v1/me/devices/{contacts_of(ANA)['phone_token']}", user=ANA)

    # THEN nothing is written; a repeat of the same directory version cannot bring her back either
    assert (put.status, delete.status) == (404, 404)
    assert every_item(stack) == erased
    directory = Directory(stack.client("dynamodb"), stack.tables["UsersTable"])
    assert directory.apply(UserUpserted(user_id=ANA, version=1, email="x@example.com")) is False
    # a newer one does, and then her app may register again
    upsert(stack, ANA, version=3)
    assert api.put("/v1/me/devices/fcm:again", json={"platform": "ios"}, user=ANA).status == 200


@pytest.mark.parametrize("credentials", ["none", "expired"])
def test_erasure_without_a_valid_token_is_401_and_erases_nothing(
    api: ApiClient, stack: MotoStack, credentials: str
) -> None:
    seed_person(stack, api, ANA)
    before = every_item(stack)
    token = api.issuer.token(ANA, ttl=-10) if credentials == "expired" else None

    answer = api.request("DELETE", "/v1/me", user=None, token=token)

    assert answer.status == 401
    assert every_item(stack) == before


def route_security_alert(stack: MotoStack, user_id: str) -> dict[str, Any]:
    """The router handler on the same stack; returns the person's notification record."""
    from herald.catalog import load_catalog

    router = fresh_function_module("functions.router.app")
    detail = {
        "event_id": f"alert-{user_id}",
        "type": "security_alert",
        "user_id": user_id,
        "data": load_catalog().types["security_alert"].sample_data,
    }
    body = json.dumps(
        {
            "version": "0",
            "id": f"id-{detail['event_id']}",
            "detail-type": "NotificationRequested",
            "source": "tests",
            "account": "123456789012",
            "time": "2026-11-30T12:00:00Z",
            "region": "us-east-1",
            "resources": [],
            "detail": detail,
        }
    )
    assert router.lambda_handler(sqs_event(body), Context()) == {"batchItemFailures": []}
    items = stack.client("dynamodb").query(
        TableName=stack.tables["NotificationsTable"],
        KeyConditionExpression="user_id = :u",
        ExpressionAttributeValues={":u": {"S": user_id}},
    )["Items"]
    [record] = [from_attributes(i) for i in items if from_attributes(i)["event_id"] == detail["event_id"]]
    return record


@pytest.mark.parametrize("erase", DOORS.values(), ids=DOORS.keys())
def test_a_person_recreated_with_a_bounced_address_is_still_not_mailed_or_texted(
    api: ApiClient, stack: MotoStack, erase: Erase
) -> None:
    # GIVEN Ana's email bounced and she had turned SMS off; she is erased
    seed_person(stack, api, ANA)
    erase(stack, api, ANA)

    # WHEN the directory re-creates her with the same email and phone, SMS allowed this time
    Directory(stack.client("dynamodb"), stack.tables["UsersTable"]).apply(
        UserUpserted.model_validate(
            {
                "user_id": ANA,
                "version": 3,
                "email": contacts_of(ANA)["email"],
                "phone": contacts_of(ANA)["phone"],
            }
        )
    )
    record = route_security_alert(stack, ANA)

    # THEN the router plans neither email nor SMS: the hashed entries still match her addresses
    planned = {delivery["channel"] for delivery in record["plan"]}
    assert "email" not in planned and "sms" not in planned
    blocked = {s["channel"]: s["reason"] for s in record["decision"] if s["rule"] == "suppression"}
    assert blocked["email"].startswith("email address suppressed: bounce (ses, since ")
    assert blocked["sms"].startswith("phone number suppressed: opted_out (erasure, since ")


def test_a_person_never_suppressed_is_mailed_after_being_recreated(api: ApiClient, stack: MotoStack) -> None:
    # GIVEN Ben (no bounce on his directory email) was erased and re-created
    seed_person(stack, api, BEN)
    SuppressionStore(stack.client("dynamodb"), stack.tables["SuppressionTable"]).release(
        email_address(contacts_of(BEN)["email"])
    )
    erase_through_the_api(stack, api, BEN)
    Directory(stack.client("dynamodb"), stack.tables["UsersTable"]).apply(
        UserUpserted.model_validate(
            {
                "user_id": BEN,
                "version": 3,
                "email": contacts_of(BEN)["email"],
                "phone": contacts_of(BEN)["phone"],
            }
        )
    )

    # WHEN a security alert is routed to him
    record = route_security_alert(stack, BEN)

    # THEN email is planned (the suppression check above is not vacuous); SMS stays off: the opt-out
    # he had made is a hashed entry now, whatever the new directory preferences say
    planned = {delivery["channel"] for delivery in record["plan"]}
    assert "email" in planned
    assert "sms" not in planned
    blocked = {s["channel"]: s["reason"] for s in record["decision"] if s["rule"] == "suppression"}
    assert blocked["sms"].startswith("phone number suppressed: opted_out (erasure, since ")


# -- UserDeleted: the tombstone first, then the erasure ------------------------------------------


class DuringErasure:
    """A DynamoDB client that runs `race` once, as the erasure reaches the notifications table."""

    def __init__(self, client: Any, notifications: str, race: Callable[[], None]) -> None:
        self._client = client
        self._notifications = notifications
        self._race: Callable[[], None] | None = race

    def query(self, **kwargs: Any) -> Any:
        if kwargs.get("TableName") == self._notifications and self._race is not None:
            race, self._race = self._race, None
            race()
        return self._client.query(**kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


class FailingOnce:
    """A DynamoDB client whose first BatchWriteItem on the notifications table fails (throttled)."""

    def __init__(self, client: Any, notifications: str) -> None:
        self._client = client
        self._notifications = notifications
        self.failed = False

    def batch_write_item(self, **kwargs: Any) -> Any:
        if self._notifications in kwargs["RequestItems"] and not self.failed:
            self.failed = True
            raise ClientError(
                {"Error": {"Code": "ProvisionedThroughputExceededException", "Message": "slow"}}, "BatchWrite"
            )
        return self._client.batch_write_item(**kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


def directory_with_erasure(stack: MotoStack, client: Any) -> Directory:
    tables = stack.tables
    erasure = Erasure(
        client,
        users=tables["UsersTable"],
        notifications=tables["NotificationsTable"],
        presence=tables["PresenceTable"],
        rate_counters=tables["RateCountersTable"],
        suppression=tables["SuppressionTable"],
    )
    return Directory(client, tables["UsersTable"], erasure=erasure)


def test_writes_racing_a_user_deleted_are_refused_and_nothing_of_them_survives(
    api: ApiClient, stack: MotoStack
) -> None:
    # GIVEN Ana; her app registers a device and sets her contacts while the bus's UserDeleted is
    # being applied
    seed_person(stack, api, ANA)
    answers: dict[str, int] = {}

    def her_app_writes() -> None:
        answers["device"] = api.put("/v1/me/devices/fcm:racing", json={"platform": "ios"}, user=ANA).status
        answers["contacts"] = api.put(
            "/v1/me/contacts", json={"email": "racing@example.com"}, user=ANA
        ).status

    client = DuringErasure(stack.client("dynamodb"), stack.tables["NotificationsTable"], her_app_writes)

    # WHEN the UserDeleted is applied
    assert directory_with_erasure(stack, client).apply(UserDeleted(user_id=ANA, version=2)) is True

    # THEN her writes were refused (the tombstone came first), and only the tombstone is left
    assert answers == {"device": 404, "contacts": 404}
    left = about(stack, ANA) + [
        (t, i) for t, i in every_item(stack) if "fcm:racing" in json.dumps(i, default=str)
    ]
    assert [(table, item.get("sk")) for table, item in left] == [("UsersTable", "DIRECTORY")], left
    assert Devices(stack.client("dynamodb"), stack.tables["UsersTable"]).owner("fcm:racing") is None


def test_a_user_deleted_that_failed_after_its_tombstone_is_finished_by_its_redelivery(
    api: ApiClient, stack: MotoStack
) -> None:
    # GIVEN Ana, and an erasure that fails part way (after the tombstone)
    seed_person(stack, api, ANA)
    flaky = FailingOnce(stack.client("dynamodb"), stack.tables["NotificationsTable"])
    directory = directory_with_erasure(stack, flaky)
    with pytest.raises(ClientError):
        directory.apply(UserDeleted(user_id=ANA, version=2))
    assert flaky.failed and directory.is_deleted(ANA)
    assert len(about(stack, ANA)) > 1  # not finished

    # WHEN SQS redelivers the same event
    repeated = directory.apply(UserDeleted(user_id=ANA, version=2))

    # THEN the erasure is finished (the version did not change: reported as not applied)
    assert repeated is False
    assert [(table, item.get("sk")) for table, item in about(stack, ANA)] == [("UsersTable", "DIRECTORY")]
    after = every_item(stack)
    # and a further repeat, or an older event, changes nothing
    assert directory.apply(UserDeleted(user_id=ANA, version=2)) is False
    assert directory.apply(UserDeleted(user_id=ANA, version=1)) is False
    assert directory.apply(UserUpserted(user_id=ANA, version=2, email="x@example.com")) is False
    assert every_item(stack) == after


def test_a_newer_upsert_racing_the_erasure_keeps_the_re_created_profile_and_roles(
    api: ApiClient, stack: MotoStack
) -> None:
    # GIVEN Ana is deleted (version 2) and the directory re-creates her (version 3) mid-erasure
    seed_person(stack, api, ANA)
    plain = stack.client("dynamodb")

    def recreated() -> None:
        Directory(plain, stack.tables["UsersTable"]).apply(
            UserUpserted.model_validate(
                {"user_id": ANA, "version": 3, "email": "back@example.com", "roles": ["support"]}
            )
        )

    client = DuringErasure(plain, stack.tables["NotificationsTable"], recreated)

    # WHEN the UserDeleted's erasure goes on
    directory_with_erasure(stack, client).apply(UserDeleted(user_id=ANA, version=2))

    # THEN the person of version 3 is there, with her roles; the tombstone is gone
    profile = UserStore(plain, stack.tables["UsersTable"]).get_profile(ANA)
    assert profile is not None and profile.email == "back@example.com"
    assert profile.devices == {} and profile.phone is None, "nothing of the erased person"
    assert list(UserStore(plain, stack.tables["UsersTable"]).iter_user_ids_with_role("support")) == [ANA]
    assert Directory(plain, stack.tables["UsersTable"]).is_deleted(ANA) is False
