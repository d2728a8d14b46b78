"""Twilio webhook: `POST /v1/webhooks/twilio` — Twilio's signed status callbacks and inbound SMS
(STOP, START, HELP). A function of its own so that only it and the SMS sender carry Twilio's SDK
(decision 035). Thin: the work is herald.api.twilio_webhooks and herald.twilio_feedback."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from herald.api.resolver import TWILIO_ROUTERS, build_resolver
from herald.api.services import CONTEXT_KEY, TwilioWebhookServices
from herald.tracing import LazyTracer

logger = Logger()
tracer = LazyTracer()  # X-Ray on the first sampled invocation, not at cold start (decision 031)

services = TwilioWebhookServices.from_environment()  # configuration validated at cold start
app = build_resolver(TWILIO_ROUTERS)


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    app.append_context(**{CONTEXT_KEY: services})  # cleared by the resolver after each request
    return app.resolve(event, context)
