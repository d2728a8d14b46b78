"""A claim whose write was applied but whose answer was lost is still ours.

botocore retries an UpdateItem whose response never arrived (a read timeout, a 500). When the first
try was applied, the retry's condition fails on the claim we just took: the ledger must recognise
its own claim instead of treating it as another invocation's (which would leave the channel
`sending` until the claim expired and then mark it `uncertain` — a notification never sent)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from herald.delivery import Claim, DeliveryLedger
from herald.messages import ChannelMessage
from herald.models import Category, Channel, Urgency
from herald.stores.dynamo import to_attributes
from tests.support.aws import create_tables_from_template

pytestmark = pytest.mark.integration


class AppliedTwice:
    """A DynamoDB client whose UpdateItem calls reach the table twice, as botocore's retry of a
    request whose answer was lost does; the caller sees the second answer."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self.retried = 0

    def update_item(self, **kwargs: Any) -> Any:
        self._client.update_item(**kwargs)
        self.retried += 1
        return self._client.update_item(**kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


@pytest.fixture
def dynamodb() -> Iterator[tuple[Any, str]]:
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        tables = create_tables_from_template(client, prefix="t-")
        yield client, tables["NotificationsTable"]


def a_message() -> ChannelMessage:
    return ChannelMessage(
        notification_id="n-1",
        event_id="e-1",
        user_id="42",
        type="order_shipped",
        channel=Channel.SMS,
        urgency=Urgency.MEDIUM,
        category=Category.TRANSACTIONAL,
        locale="en",
    )


@pytest.mark.parametrize("record_exists", [True, False], ids=["claim", "create-with-claim"])
def test_a_claim_applied_twice_is_still_ours(dynamodb: tuple[Any, str], record_exists: bool) -> None:
    client, table = dynamodb
    if record_exists:  # GIVEN the router's record (else the sender creates a minimal one)
        client.put_item(
            TableName=table,
            Item=to_attributes(
                {"user_id": "42", "notification_id": "n-1", "deliveries": {}, "data": {"order_id": "9"}}
            ),
        )
    flaky = AppliedTwice(client)
    ledger = DeliveryLedger(flaky, table)

    # WHEN the claim's write is applied and then retried
    claim = ledger.claim(a_message(), lease_seconds=60)

    # THEN the invocation holds the claim and may send (not "in flight" until it goes stale)
    assert flaky.retried >= 1
    assert isinstance(claim, Claim)
    item = client.get_item(TableName=table, Key=to_attributes({"user_id": "42", "notification_id": "n-1"}))
    assert item["Item"]["deliveries"]["M"]["sms"]["M"]["claim_id"]["S"] == claim.claim_id
    if record_exists:
        assert claim.record["data"] == {"order_id": "9"}
