"""Email sender: EmailQueue → SES or SendGrid (failover on retry-later), one-click unsubscribe on
marketing mail. Thin: the work is herald.channels (email_delivery, sender)."""

from __future__ import annotations

import boto3
from aws_lambda_powertools import Logger
from aws_lambda_powertools.metrics import EphemeralMetrics

from herald.channels.credentials import SecretBacked, SecretSource
from herald.channels.email_delivery import EmailDeliverer, FailoverEmailProvider, UnsubscribeLinks
from herald.channels.handler import sender_handler
from herald.channels.lazy import LazyEmailProvider
from herald.channels.ports import EmailProvider
from herald.channels.ses import SesEmailProvider, send_client
from herald.channels.settings import EmailSenderSettings
from herald.channels.wiring import processor_for, sender_for, stores_for
from herald.rendering import default_renderer
from herald.settings import load
from herald.tracing import LazyTracer
from herald.unsubscribe import key_from_secret

logger = Logger()
tracer = LazyTracer()  # X-Ray on the first sampled invocation, not at cold start (decision 031)
metrics = EphemeralMetrics()  # its own state: the local stack runs every sender in one process

settings = load(EmailSenderSettings)
dynamodb = boto3.client("dynamodb")
sqs = boto3.client("sqs")
sesv2 = send_client(timeout=settings.provider_timeout_seconds)  # one attempt: never resends after a timeout
secrets = SecretSource(max_age=settings.secrets_max_age_seconds)


def email_provider() -> EmailProvider:
    ses: EmailProvider = SesEmailProvider(sesv2, settings.ses_configuration_set)
    sendgrid: EmailProvider | None = None
    if settings.sendgrid_secret_arn:
        timeout = settings.provider_timeout_seconds

        def sendgrid_from(secret: dict[str, object]) -> EmailProvider:
            # The SendGrid SDK is imported when SendGrid first sends, not at cold start: with SES
            # as the primary it is only the failover's (decision 031).
            from herald.channels.sendgrid_email import SendGridEmailProvider

            return SendGridEmailProvider.from_secret(secret, timeout=timeout)

        sendgrid = LazyEmailProvider(
            "sendgrid", SecretBacked(secrets, settings.sendgrid_secret_arn, sendgrid_from)
        )
    primary, secondary = (ses, sendgrid) if settings.email_provider == "ses" else (sendgrid, ses)
    assert primary is not None  # EmailSenderSettings refuses sendgrid without its secret
    if settings.failover_active and secondary is not None:
        return FailoverEmailProvider(primary, secondary)
    return primary


stores = stores_for(settings, dynamodb)
deliverer = EmailDeliverer(
    email_provider(),
    default_renderer(),
    stores.suppression,
    sender=settings.from_address,
    reply_to=settings.reply_to,
    unsubscribe=UnsubscribeLinks(
        api_base_url=settings.api_base_url,
        signing_key=lambda: key_from_secret(secrets.text(settings.unsubscribe_secret_arn)),
        ttl_seconds=settings.unsubscribe_token_days * 86400,
        mailto=settings.unsubscribe_mailto,
    ),
)
sender = sender_for(deliverer, settings, stores, sqs=sqs, metrics=metrics)
processor = processor_for(settings, sqs=sqs, logger=logger, metrics=metrics)

lambda_handler = sender_handler(sender, processor, logger=logger, tracer=tracer, metrics=metrics)
