"""What the API's routers work with: the function's settings, its DynamoDB client and its Step
Functions client (acknowledgements answer escalation task tokens). The Twilio webhook's function
(decision 035) has its own, smaller set (`TwilioWebhookServices`).

The API function builds one `Services` at its cold start (`Services.from_environment()`) and hands
it to the resolver on every invocation (`app.append_context(services=...)`); routers read it with
`services(router)` and build their (cheap) stores from it per request. Nothing is cached in this
package, so a second cold start in the same process (the local stack, the tests) gets clients for
its own environment, never the first one's endpoint.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import boto3
from aws_lambda_powertools.event_handler.api_gateway import BaseRouter

from herald.channels.credentials import SecretBacked, SecretSource
from herald.delivery import DeliveryLedger
from herald.feedback import FeedbackRecorder
from herald.sendgrid_feedback import EventWebhookVerifier
from herald.settings import ApiSettings, OperatorSettings, Tables, TwilioWebhookSettings, load
from herald.stores.suppression import SuppressionStore
from herald.stores.users import UserStore
from herald.twilio_feedback import InboundKeywords, TwilioWebhookVerifier
from herald.unsubscribe import key_from_secret

if TYPE_CHECKING:
    import pusher

CONTEXT_KEY = "services"


def pusher_client(secret: dict[str, Any]) -> pusher.Pusher:
    """The Pusher app of the Pusher secret (the realtime sender's too): its key and secret are what
    the SDK's `validate_webhook` and `authenticate` use. No request is ever sent with it here. The SDK
    is imported with the first Pusher request, not at cold start (decision 031)."""
    import pusher

    return pusher.Pusher(app_id=str(secret["app_id"]), key=str(secret["key"]), secret=str(secret["secret"]))


@dataclass(frozen=True)
class Services:
    settings: ApiSettings
    dynamodb: Any
    stepfunctions: Any  # SendTaskSuccess for acknowledged escalations (herald.acknowledgement)
    pusher: SecretBacked[pusher.Pusher]  # `.get()`: the current app (rebuilt when the secret rotates)
    # the SendGrid secret's webhook key (decision 023); its SDK loads on first use
    sendgrid_events: SecretBacked[EventWebhookVerifier]
    # the one-click unsubscribe links' HMAC key (decision 024); raises ProviderUnavailable
    unsubscribe_key: Callable[[], str]

    @classmethod
    def from_environment(cls) -> Services:
        """Configuration validated now (a cold start fails loudly, not the first request); the
        provider secrets are read on first use (cached by powertools)."""
        settings = load(ApiSettings)
        secrets = SecretSource()
        return cls(
            settings=settings,
            dynamodb=boto3.client("dynamodb"),
            stepfunctions=boto3.client("stepfunctions"),
            pusher=SecretBacked(secrets, settings.pusher_secret_arn, pusher_client),
            sendgrid_events=SecretBacked(
                secrets, settings.sendgrid_secret_arn, EventWebhookVerifier.from_secret
            ),
            unsubscribe_key=lambda: key_from_secret(secrets.text(settings.unsubscribe_secret_arn)),
        )

    @property
    def tables(self) -> Tables:
        return self.settings.tables

    def feedback_recorder(self) -> FeedbackRecorder:
        return feedback_recorder(self.dynamodb, self.tables)


@dataclass(frozen=True)
class TwilioWebhookServices:
    """The Twilio webhook function's (decision 035): the verifier and the stores feedback needs."""

    settings: TwilioWebhookSettings
    dynamodb: Any
    # the Twilio secret's auth token (decision 023); the SDK loads on the first webhook
    verifier: SecretBacked[TwilioWebhookVerifier]
    # each inbound STOP / START applied once, by its MessageSid
    inbound_keywords: InboundKeywords

    @classmethod
    def from_environment(cls) -> TwilioWebhookServices:
        settings = load(TwilioWebhookSettings)
        dynamodb = boto3.client("dynamodb")
        return cls(
            settings=settings,
            dynamodb=dynamodb,
            verifier=SecretBacked(
                SecretSource(), settings.twilio_secret_arn, TwilioWebhookVerifier.from_secret
            ),
            inbound_keywords=InboundKeywords(
                SuppressionStore(dynamodb, settings.tables.suppression), dynamodb, settings.tables.idempotency
            ),
        )

    @property
    def tables(self) -> Tables:
        return self.settings.tables

    def feedback_recorder(self) -> FeedbackRecorder:
        return feedback_recorder(self.dynamodb, self.tables)


@dataclass(frozen=True)
class OperatorServices:
    """The operator function's (decision 038): DynamoDB for the console's reads and lifts, EventBridge
    for manual sends. No provider secret, no provider SDK."""

    settings: OperatorSettings
    dynamodb: Any
    events: Any  # PutEvents of an administrator's sends (herald.sends)

    @classmethod
    def from_environment(cls) -> OperatorServices:
        return cls(
            settings=load(OperatorSettings), dynamodb=boto3.client("dynamodb"), events=boto3.client("events")
        )

    @property
    def tables(self) -> Tables:
        return self.settings.tables


def feedback_recorder(dynamodb: Any, tables: Tables) -> FeedbackRecorder:
    """Applies the providers' feedback (herald.feedback): delivery log, suppression, opt-out."""
    return FeedbackRecorder(
        DeliveryLedger(dynamodb, tables.notifications, users_table=tables.users),
        SuppressionStore(dynamodb, tables.suppression),
        UserStore(dynamodb, tables.users),
    )


def services(router: BaseRouter) -> Services:
    found = router.context.get(CONTEXT_KEY)
    if not isinstance(found, Services):
        raise RuntimeError("the API function did not hand its services to the resolver")
    return found


def twilio_services(router: BaseRouter) -> TwilioWebhookServices:
    found = router.context.get(CONTEXT_KEY)
    if not isinstance(found, TwilioWebhookServices):
        raise RuntimeError("the Twilio webhook function did not hand its services to the resolver")
    return found


def operator_services(router: BaseRouter) -> OperatorServices:
    found = router.context.get(CONTEXT_KEY)
    if not isinstance(found, OperatorServices):
        raise RuntimeError("the operator function did not hand its services to the resolver")
    return found
