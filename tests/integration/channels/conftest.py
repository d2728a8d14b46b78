"""Fixtures for the channel senders' integration tests: moto as AWS (tables from template.yaml,
queues with DLQs, the escalation state machine), provider secrets aimed at the loopback
sandboxes, and helpers to feed real SQS records to the real handlers."""

from __future__ import annotations

import importlib
import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest
from aws_lambda_powertools.utilities import parameters
from moto import mock_aws

from herald.messages import ChannelMessage
from herald.models import Category, Channel, Urgency
from herald.stores.dynamo import from_attributes
from herald.stores.notifications import NotificationRecord, NotificationStore
from herald.stores.users import UserStore
from herald.users import UserProfile
from local.sandboxes import SandboxHost, google_auth_on_loopback
from tests.support.moto_stack import ACCOUNT, MOTO_CONFIG, REGION, MotoStack, provision

FROM_ADDRESS = "notifications@example.com"
WEBHOOK_SECRET_PREFIX = "herald/dev/webhooks/"
SENDER_APPS = ("email_sender", "push_sender", "sms_sender", "realtime_sender", "webhook_sender")


class FakeLambdaContext:
    function_name = "herald-sender"
    memory_limit_in_mb = 512
    invoked_function_arn = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:herald-sender"
    aws_request_id = "req-1"

    @staticmethod
    def get_remaining_time_in_millis() -> int:
        return 30_000


@pytest.fixture(scope="session")
def sandbox() -> Iterator[SandboxHost]:
    """One loopback host for the session (Pusher, FCM + OAuth, Twilio, SendGrid, receivers)."""
    with google_auth_on_loopback(), SandboxHost(port=0, receivers=("default", "orders")) as host:
        yield host


@pytest.fixture(autouse=True)
def _fresh_sandbox(sandbox: SandboxHost) -> Iterator[None]:
    sandbox.reset()
    yield
    sandbox.reset()


@pytest.fixture(autouse=True)
def _fresh_caches() -> Iterator[None]:
    parameters.clear_caches()
    yield
    parameters.clear_caches()
    for name in SENDER_APPS:
        sys.modules.pop(f"functions.{name}.app", None)


@dataclass
class Env:
    """moto + sandboxes wired as the template wires the senders."""

    stack: MotoStack
    sandbox: SandboxHost
    secret_arns: dict[str, str] = field(default_factory=dict)
    context: FakeLambdaContext = field(default_factory=FakeLambdaContext)

    def client(self, service: str) -> Any:
        return self.stack.client(service)

    # -- data --------------------------------------------------------------------------------

    def put_profile(self, profile: UserProfile) -> None:
        UserStore(self.client("dynamodb"), self.stack.tables["UsersTable"]).put_profile(profile)

    def profile(self, user_id: str) -> UserProfile | None:
        return UserStore(self.client("dynamodb"), self.stack.tables["UsersTable"]).get_profile(user_id)

    def create_record(self, message: ChannelMessage) -> None:
        """The notification record as the router writes it before queueing anything."""
        NotificationStore(self.client("dynamodb"), self.stack.tables["NotificationsTable"]).create(
            NotificationRecord(
                user_id=message.user_id,
                notification_id=message.notification_id,
                event_id=message.event_id,
                type=message.type,
                category=message.category,
                urgency=message.urgency,
                locale=message.locale,
                data=message.data,
                created_at=datetime.now(UTC),
                status="routed",
            )
        )

    def record(self, message: ChannelMessage) -> dict[str, Any]:
        item = self.client("dynamodb").get_item(
            TableName=self.stack.tables["NotificationsTable"],
            Key={"user_id": {"S": message.user_id}, "notification_id": {"S": message.notification_id}},
            ConsistentRead=True,
        )["Item"]
        return from_attributes(item)

    def suppressed(self, address: str) -> bool:
        return "Item" in self.client("dynamodb").get_item(
            TableName=self.stack.tables["SuppressionTable"], Key={"address": {"S": address}}
        )

    def add_webhook_secret(self, name: str, value: str) -> str:
        return self.client("secretsmanager").create_secret(
            Name=f"{WEBHOOK_SECRET_PREFIX}{name}", SecretString=value
        )["ARN"]

    # -- SQS ---------------------------------------------------------------------------------

    def enqueue(self, queue: str, *bodies: str) -> None:
        sqs = self.client("sqs")
        for body in bodies:
            sqs.send_message(QueueUrl=self.stack.queue_urls[queue], MessageBody=body)

    def receive_event(self, queue: str, expected: int = 1) -> dict[str, Any]:
        """Receive from the real queue and shape it like Lambda's SQS event."""
        sqs = self.client("sqs")
        url = self.stack.queue_urls[queue]
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        messages: list[dict[str, Any]] = []
        for _ in range(5):
            messages += sqs.receive_message(
                QueueUrl=url, MaxNumberOfMessages=10, AttributeNames=["All"], WaitTimeSeconds=0
            ).get("Messages", [])
            if len(messages) >= expected:
                break
        assert len(messages) == expected, f"expected {expected} message(s) on {queue}, got {len(messages)}"
        return {
            "Records": [
                {
                    "messageId": m["MessageId"],
                    "receiptHandle": m["ReceiptHandle"],
                    "body": m["Body"],
                    "attributes": m.get("Attributes", {}),
                    "messageAttributes": {},
                    "md5OfBody": m["MD5OfBody"],
                    "eventSource": "aws:sqs",
                    "eventSourceARN": arn,
                    "awsRegion": REGION,
                }
                for m in messages
            ]
        }

    def visible(self, queue: str) -> int:
        attributes = self.client("sqs").get_queue_attributes(
            QueueUrl=self.stack.queue_urls[queue], AttributeNames=["ApproximateNumberOfMessages"]
        )["Attributes"]
        return int(attributes["ApproximateNumberOfMessages"])

    def app(self, name: str) -> Any:
        """The real handler module, imported fresh (its clients and settings are module-scoped)."""
        sys.modules.pop(f"functions.{name}.app", None)
        return importlib.import_module(f"functions.{name}.app")


@pytest.fixture
def env(sandbox: SandboxHost, monkeypatch: pytest.MonkeyPatch) -> Iterator[Env]:
    with mock_aws(config=MOTO_CONFIG):
        stack = provision()
        for name, value in stack.env.items():
            monkeypatch.setenv(name, value)
        context = Env(stack=stack, sandbox=sandbox)
        secrets_manager = stack.client("secretsmanager")
        for provider, value in sandbox.credentials.secrets().items():
            context.secret_arns[provider] = secrets_manager.create_secret(
                Name=f"herald/dev/{provider}", SecretString=json.dumps(value)
            )["ARN"]
        context.secret_arns["unsubscribe"] = secrets_manager.create_secret(
            Name="herald/dev/unsubscribe", SecretString="u" * 64
        )["ARN"]
        stack.client("sesv2").create_email_identity(EmailIdentity=FROM_ADDRESS)
        settings = {
            "EMAIL_PROVIDER": "ses",
            "EMAIL_FAILOVER": "false",
            "EMAIL_FROM": FROM_ADDRESS,
            "EMAIL_REPLY_TO": "",
            "SES_CONFIGURATION_SET": "herald-dev",
            "SENDGRID_SECRET_ARN": context.secret_arns["sendgrid"],
            "UNSUBSCRIBE_SECRET_ARN": context.secret_arns["unsubscribe"],
            "API_BASE_URL": "https://api.example.com",
            "FCM_SECRET_ARN": context.secret_arns["fcm"],
            "TWILIO_SECRET_ARN": context.secret_arns["twilio"],
            "TWILIO_STATUS_CALLBACK_URL": "https://api.example.com/v1/webhooks/twilio",
            "PUSHER_SECRET_ARN": context.secret_arns["pusher"],
            "WEBHOOK_SECRET_PREFIX": WEBHOOK_SECRET_PREFIX,
            "RETRY_BASE_SECONDS": "1",
            "RETRY_MAX_SECONDS": "1",
            "PROVIDER_TIMEOUT_SECONDS": "5",
            "WEBHOOK_TIMEOUT_SECONDS": "2",
        }
        for name, value in settings.items():
            monkeypatch.setenv(name, value)
        yield context


def a_profile(user_id: str = "42", **overrides: Any) -> UserProfile:
    fields: dict[str, Any] = {
        "user_id": user_id,
        "email": f"user{user_id}@example.com",
        "phone": "+14155550100",
        "devices": {f"tok-{user_id}": {"platform": "android", "registered_at": "2026-01-01T00:00:00Z"}},
    }
    fields.update(overrides)
    return UserProfile.model_validate(fields)


def a_message(channel: Channel, **overrides: Any) -> ChannelMessage:
    fields: dict[str, Any] = {
        "notification_id": "ntf-1",
        "event_id": "evt-1",
        "user_id": "42",
        "type": "payment_receipt",
        "channel": channel,
        "urgency": Urgency.HIGH,
        "category": Category.TRANSACTIONAL,
        "locale": "en",
        "data": {
            "amount": "49.90",
            "currency": "EUR",
            "merchant": "Example Store",
            "card_last4": "4242",
            "receipt_url": "https://app.example.com/receipts/r-1",
        },
    }
    fields.update(overrides)
    return ChannelMessage.model_validate(fields)


def handle(env: Env, app: Any, event: dict[str, Any]) -> dict[str, Any]:
    return app.lambda_handler(event, env.context)
