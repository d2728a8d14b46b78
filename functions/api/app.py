"""API: the HTTP API's routes (JWT) → one powertools resolver with a router per module
(herald.api.*, decision 015). Thin: the work is in the routers' domain modules."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from herald.api.resolver import build_resolver
from herald.api.services import CONTEXT_KEY, Services
from herald.tracing import LazyTracer

logger = Logger()
tracer = LazyTracer()  # X-Ray on the first sampled invocation, not at cold start (decision 031)

services = Services.from_environment()  # configuration validated at cold start
app = build_resolver()


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    app.append_context(**{CONTEXT_KEY: services})  # cleared by the resolver after each request
    return app.resolve(event, context)
