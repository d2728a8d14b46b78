"""Email sender: EmailQueue → SES or SendGrid (failover on retry-later), one-click unsubscribe on
marketing mail. Thin: the work is herald.channels (email_delivery, sender)."""

from __future__ import annotations

from typing import Any

import boto3
from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.utilities.batch import process_partial_response
from aws_lambda_powertools.utilities.typing import LambdaContext

from herald.channels.credentials import SecretBacked, SecretSource
from herald.channels.email_delivery import EmailDeliverer, FailoverEmailProvider, UnsubscribeLinks
from herald.channels.lazy import LazyEmailProvider
from herald.channels.ports import EmailProvider
from herald.channels.sender import ChannelRecord
from herald.channels.sendgrid_email import SendGridEmailProvider
from herald.channels.ses import SesEmailProvider
from herald.channels.settings import EmailSenderSettings, load_settings
from herald.channels.wiring import processor_for, sender_for, stores_for
from herald.rendering import default_renderer
from herald.unsubscribe import key_from_secret

logger = Logger()
tracer = Tracer()
metrics = Metrics()

settings = load_settings(EmailSenderSettings)
dynamodb = boto3.client("dynamodb")
sqs = boto3.client("sqs")
sesv2 = boto3.client("sesv2")
secrets = SecretSource(max_age=settings.secrets_max_age_seconds)


def email_provider() -> EmailProvider:
    ses: EmailProvider = SesEmailProvider(sesv2, settings.ses_configuration_set)
    sendgrid: EmailProvider | None = None
    if settings.sendgrid_secret_arn:
        timeout = settings.provider_timeout_seconds
        sendgrid = LazyEmailProvider(
            "sendgrid",
            SecretBacked(
                secrets,
                settings.sendgrid_secret_arn,
                lambda secret: SendGridEmailProvider.from_secret(secret, timeout=timeout),
            ),
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
processor = processor_for(settings, sqs=sqs, logger=logger, channel="email", metrics=metrics)


@tracer.capture_method
def send_one(record: ChannelRecord, lambda_context: LambdaContext | None = None) -> dict[str, Any]:
    return sender.handle_record(record, lambda_context)


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return process_partial_response(
        event=event, record_handler=send_one, processor=processor, context=context
    )
