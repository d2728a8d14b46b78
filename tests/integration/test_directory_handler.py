"""The directory handler on moto, provisioned from template.yaml: batches in version order, partial
batch failures, invalid events to the directory DLQ with the reason."""

from __future__ import annotations

from typing import Any

import pytest

from herald.batch import REJECTION_ATTRIBUTE
from herald.stores.users import UserStore
from tests.support.lambda_context import FakeContext
from tests.support.sqs import directory_body
from tests.support.stack import (
    MotoStack,
    fresh_function_module,
)

pytestmark = pytest.mark.integration
CONTEXT = FakeContext("herald-directory", 30)


@pytest.fixture
def handler(stack: MotoStack) -> Any:
    """The real handler module, imported fresh inside moto (its clients are module-scoped)."""

    return fresh_function_module("functions.directory.app")


def sqs_event(*bodies: str) -> dict[str, Any]:
    return {
        "Records": [
            {
                "messageId": f"m-{i}",
                "receiptHandle": f"r-{i}",
                "body": body,
                "attributes": {
                    "ApproximateReceiveCount": "1",
                    "SentTimestamp": "1795348800000",
                    "SenderId": "AIDAEXAMPLE",
                    "ApproximateFirstReceiveTimestamp": "1795348800001",
                },
                "messageAttributes": {},
                "md5OfBody": "0",
                "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:DirectoryQueue",
                "awsRegion": "us-east-1",
            }
            for i, body in enumerate(bodies)
        ]
    }


def test_a_batch_is_applied_in_version_order_whatever_its_order(stack: MotoStack, handler: Any) -> None:
    # GIVEN a batch where a newer upsert precedes an older one, and a repeat
    newer = directory_body("UserUpserted", {"user_id": "42", "version": 2, "phone": "+14155550199"})
    older = directory_body("UserUpserted", {"user_id": "42", "version": 1, "phone": "+14155550100"})

    # WHEN the handler runs it
    result = handler.lambda_handler(sqs_event(newer, older, newer), CONTEXT)

    # THEN every record succeeded and the newer phone stands
    assert result == {"batchItemFailures": []}
    profile = UserStore(stack.client("dynamodb"), stack.tables["UsersTable"]).get_profile("42")
    assert profile is not None and profile.phone == "+14155550199"
    assert stack.drain("DirectoryDeadLetter") == []


def test_a_delete_removes_the_entry_and_blocks_a_late_upsert(stack: MotoStack, handler: Any) -> None:
    handler.lambda_handler(
        sqs_event(directory_body("UserUpserted", {"user_id": "7", "version": 1, "roles": ["admin"]})),
        CONTEXT,
    )

    result = handler.lambda_handler(
        sqs_event(
            directory_body("UserDeleted", {"user_id": "7", "version": 3}),
            directory_body("UserUpserted", {"user_id": "7", "version": 2, "roles": ["admin"]}),
        ),
        CONTEXT,
    )

    assert result == {"batchItemFailures": []}
    users = UserStore(stack.client("dynamodb"), stack.tables["UsersTable"])
    assert users.get_profile("7") is None
    assert list(users.iter_user_ids_with_role("admin")) == []


def test_an_invalid_event_goes_to_the_dlq_with_its_reason_and_fails_alone(
    stack: MotoStack, handler: Any
) -> None:
    bad = directory_body("UserUpserted", {"user_id": "9", "version": 1, "time_zone": "Mars/Olympus"})
    good = directory_body("UserUpserted", {"user_id": "10", "version": 1})

    result = handler.lambda_handler(sqs_event(bad, good), CONTEXT)

    assert result == {"batchItemFailures": []}, "a rejection is moved, not retried"
    dead = stack.drain("DirectoryDeadLetter")
    assert [m["Body"] for m in dead] == [bad]
    reason = dead[0]["MessageAttributes"][REJECTION_ATTRIBUTE]["StringValue"]
    assert "time_zone" in reason and "unknown IANA time zone" in reason
    users = UserStore(stack.client("dynamodb"), stack.tables["UsersTable"])
    assert users.get_profile("9") is None
    assert users.get_profile("10") is not None


def test_an_aws_failure_is_a_batch_item_failure_to_retry(
    stack: MotoStack, handler: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from botocore.exceptions import ClientError

    def throttled(**_: Any) -> None:
        raise ClientError(
            {"Error": {"Code": "ThrottlingException", "Message": "slow down"}}, "TransactWriteItems"
        )

    monkeypatch.setattr(handler.directory._client, "transact_write_items", throttled)

    result = handler.lambda_handler(
        sqs_event(directory_body("UserUpserted", {"user_id": "11", "version": 1})),
        CONTEXT,
    )

    assert result == {"batchItemFailures": [{"itemIdentifier": "m-0"}]}
    assert stack.drain("DirectoryDeadLetter") == []
