"""moto as the local stack and the tests run it keeps every DynamoDB write made while another
thread's transaction fails (`local.moto_server.serialise_dynamodb`): unpatched, moto puts back a
snapshot of the whole table and the push sender's concurrent records lost their dead-token removals.
A failed transaction undoes exactly its own writes from a copy of the items it names
(`local.moto_server.snapshot_transactions_by_item`), not of whole tables. And moto keeps no DynamoDB
or SQS object it no longer uses (`local.moto_server.untrack_models`): unpatched, every
transaction's snapshot of whole tables stayed in memory until a reset.
"""

from __future__ import annotations

import gc
import sys
import threading
import time
from collections.abc import Iterator

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws
from moto.dynamodb.models.dynamo_type import Item
from moto.dynamodb.models.table import Table
from moto.sqs.models import Message

import local.moto_server  # noqa: F401  (importing it serialises moto's DynamoDB requests)

pytestmark = pytest.mark.integration

WRITES = 60


@pytest.fixture
def threads_switch_often() -> Iterator[None]:
    """The interpreter hands over between threads every 10 µs instead of 5 ms, so that the two
    threads' requests overlap in moto as they would under load."""
    before = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)
    yield
    sys.setswitchinterval(before)


@pytest.mark.usefixtures("threads_switch_often")
def test_a_failing_transaction_never_erases_another_threads_writes() -> None:
    with mock_aws():
        dynamodb = boto3.client("dynamodb", region_name="us-east-1")
        dynamodb.create_table(
            TableName="t",
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        for i in range(200):  # a table big enough that moto's snapshot takes a while
            dynamodb.put_item(TableName="t", Item={"pk": {"S": f"other-{i}"}, "v": {"S": "x" * 200}})
        cancelled: list[str] = []
        unexpected: list[BaseException] = []

        def failing_transactions() -> None:
            client = boto3.client("dynamodb", region_name="us-east-1")
            for _ in range(WRITES):
                try:
                    client.transact_write_items(
                        TransactItems=[
                            {
                                "Update": {
                                    "TableName": "t",
                                    "Key": {"pk": {"S": "absent"}},
                                    "UpdateExpression": "SET a = :a",
                                    "ConditionExpression": "attribute_exists(pk)",
                                    "ExpressionAttributeValues": {":a": {"S": "1"}},
                                }
                            }
                        ]
                    )
                except ClientError as error:
                    cancelled.append(error.response["Error"]["Code"])
                except Exception as error:  # moto's snapshot of a table another thread changes
                    unexpected.append(error)
                time.sleep(0.001)

        other = threading.Thread(target=failing_transactions)
        other.start()
        for i in range(WRITES):
            dynamodb.put_item(TableName="t", Item={"pk": {"S": f"kept-{i}"}})
            time.sleep(0.001)  # each thread lets the other run in between
        other.join()

        kept = dynamodb.batch_get_item(
            RequestItems={"t": {"Keys": [{"pk": {"S": f"kept-{i}"}} for i in range(WRITES)]}}
        )["Responses"]["t"]
        assert len(kept) == WRITES
        assert unexpected == []
        assert len(cancelled) == WRITES and set(cancelled) == {"TransactionCanceledException"}


def _alive(kind: type) -> int:
    gc.collect()
    return sum(1 for thing in gc.get_objects() if isinstance(thing, kind))


def test_moto_keeps_no_replaced_or_copied_item_nor_consumed_message() -> None:
    with mock_aws():
        dynamodb = boto3.client("dynamodb", region_name="us-east-1")
        dynamodb.create_table(
            TableName="counters",
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        items = _alive(Item)
        for i in range(100):  # as the router counts rates: one transaction per batch, a new key each
            dynamodb.transact_write_items(
                TransactItems=[
                    {
                        "Update": {
                            "TableName": "counters",
                            "Key": {"pk": {"S": f"person-{i}"}},
                            "UpdateExpression": "ADD n :one",
                            "ExpressionAttributeValues": {":one": {"N": "1"}},
                        }
                    }
                ]
            )
        assert _alive(Item) - items == 100  # the table's own items, none replaced or copied kept

        sqs = boto3.client("sqs", region_name="us-east-1")
        queue = sqs.create_queue(QueueName="q")["QueueUrl"]
        messages = _alive(Message)
        for i in range(20):
            sqs.send_message(QueueUrl=queue, MessageBody=str(i))
        received = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10)["Messages"]
        for message in received:
            sqs.delete_message(QueueUrl=queue, ReceiptHandle=message["ReceiptHandle"])
        assert _alive(Message) - messages == 20 - len(received)


@pytest.mark.parametrize("range_key", [False, True])
def test_a_failed_transaction_undoes_exactly_its_own_writes_without_copying_the_table(
    range_key: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    def copied(table: Table, memo: dict[int, object]) -> Table:
        raise AssertionError(f"a transaction copied the whole table {table.name}")

    monkeypatch.setattr(Table, "__deepcopy__", copied, raising=False)
    with mock_aws():
        dynamodb = boto3.client("dynamodb", region_name="us-east-1")
        schema = [{"AttributeName": "pk", "KeyType": "HASH"}]
        attributes = [{"AttributeName": "pk", "AttributeType": "S"}]
        if range_key:
            schema.append({"AttributeName": "sk", "KeyType": "RANGE"})
            attributes.append({"AttributeName": "sk", "AttributeType": "S"})
        dynamodb.create_table(
            TableName="t", KeySchema=schema, AttributeDefinitions=attributes, BillingMode="PAY_PER_REQUEST"
        )

        def key(name: str) -> dict[str, dict[str, str]]:
            return {"pk": {"S": name}} | ({"sk": {"S": "0"}} if range_key else {})

        for name in ("updated", "deleted", "replaced", "checked"):
            dynamodb.put_item(TableName="t", Item=key(name) | {"n": {"N": "1"}})

        def table() -> dict[str, dict[str, object]]:
            items = dynamodb.scan(TableName="t", ConsistentRead=True)["Items"]
            return {item["pk"]["S"]: item for item in items}

        before = table()
        with pytest.raises(ClientError) as refused:
            dynamodb.transact_write_items(
                TransactItems=[
                    {"Put": {"TableName": "t", "Item": key("new") | {"n": {"N": "1"}}}},
                    {"Put": {"TableName": "t", "Item": key("replaced") | {"n": {"N": "9"}}}},
                    {
                        "Update": {
                            "TableName": "t",
                            "Key": key("updated"),
                            "UpdateExpression": "ADD n :one",
                            "ExpressionAttributeValues": {":one": {"N": "1"}},
                        }
                    },
                    {"Delete": {"TableName": "t", "Key": key("deleted")}},
                    {
                        "ConditionCheck": {
                            "TableName": "t",
                            "Key": key("checked"),
                            "ConditionExpression": "n = :two",
                            "ExpressionAttributeValues": {":two": {"N": "2"}},
                        }
                    },
                ]
            )
        assert refused.value.response["Error"]["Code"] == "TransactionCanceledException"
        assert table() == before

        # and one that holds writes all of it
        dynamodb.transact_write_items(
            TransactItems=[
                {"Put": {"TableName": "t", "Item": key("new") | {"n": {"N": "1"}}}},
                {"Delete": {"TableName": "t", "Key": key("deleted")}},
            ]
        )
        assert set(table()) == {"updated", "replaced", "checked", "new"}
