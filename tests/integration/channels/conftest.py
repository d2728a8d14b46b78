"""Fixtures for the channel senders' integration tests: moto as AWS with template.yaml's
resources and the functions' environment provisioned from it (tests/support/stack.py), the
provider secrets holding the loopback sandboxes' credentials, and helpers to feed real SQS
records to the real handlers."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest
from aws_lambda_powertools.utilities import parameters

from herald.messages import ChannelMessage
from herald.models import Category, Channel, Urgency
from herald.stores.dynamo import from_attributes
from herald.stores.notifications import NotificationRecord, NotificationStore
from herald.stores.users import UserStore
from herald.users import UserProfile
from local.provision import PROVIDER_SECRETS
from local.sandboxes import SandboxHost, google_auth_on_loopback
from tests.support.sqs import received_event
from tests.support.stack import ACCOUNT, REGION, MotoStack, SharedStack

FROM_ADDRESS = "notifications@example.com"  # the template's EmailFromAddress in these tests
# Not in the template: code defaults tightened so retries and timeouts take seconds here.
TEST_SETTINGS = {
    "RETRY_BASE_SECONDS": "1",
    "RETRY_MAX_SECONDS": "1",
    "PROVIDER_TIMEOUT_SECONDS": "5",
    "WEBHOOK_TIMEOUT_SECONDS": "2",
}


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
    for name in [m for m in sys.modules if m.startswith("functions.") and m.endswith(".app")]:
        sys.modules.pop(name, None)


@dataclass
class Env:
    """moto + sandboxes wired as the template wires the senders."""

    stack: MotoStack
    sandbox: SandboxHost
    # Provider secrets by provider ("sendgrid", ...), other secrets by logical id.
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

    def secret_value(self, key: str) -> str:
        """The value of one of the stack's secrets (a `secret_arns` key)."""
        return self.client("secretsmanager").get_secret_value(SecretId=self.secret_arns[key])["SecretString"]

    def add_webhook_secret(self, name: str, value: str) -> str:
        return self.client("secretsmanager").create_secret(
            Name=f"{self.stack.env['WEBHOOK_SECRET_PREFIX']}{name}", SecretString=value
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
        return received_event(messages, arn)

    def visible(self, queue: str) -> int:
        attributes = self.client("sqs").get_queue_attributes(
            QueueUrl=self.stack.queue_urls[queue], AttributeNames=["ApproximateNumberOfMessages"]
        )["Attributes"]
        return int(attributes["ApproximateNumberOfMessages"])

    def app(self, name: str) -> Any:
        """The real handler module, imported fresh (its clients and settings are module-scoped)."""
        sys.modules.pop(f"functions.{name}.app", None)
        return importlib.import_module(f"functions.{name}.app")


@pytest.fixture(scope="package")
def _provisioned(sandbox: SandboxHost) -> Iterator[SharedStack]:
    """One stack for the package's modules, reset between tests (tests/support/stack.py:
    SharedStack). The provisioner fills the provider secrets with the sandboxes' credentials and
    verifies the From address in SES, as on the local stack."""
    with SharedStack(
        sandbox=sandbox, parameters={"EmailFromAddress": FROM_ADDRESS}, environment=TEST_SETTINGS
    ) as shared:
        yield shared


@pytest.fixture
def env(sandbox: SandboxHost, _provisioned: SharedStack, monkeypatch: pytest.MonkeyPatch) -> Iterator[Env]:
    """The package's stack, as freshly provisioned, with the functions' environment set."""
    with _provisioned.checkout(monkeypatch) as stack:
        secret_arns = {
            PROVIDER_SECRETS.get(logical_id, logical_id): arn for logical_id, arn in stack.secrets.items()
        }
        yield Env(stack=stack, sandbox=sandbox, secret_arns=secret_arns)


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
