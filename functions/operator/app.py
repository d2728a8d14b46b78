"""Operator: `/v1/admin/*` behind the admin scope — manual sends and the operator console's reads
and lifts (decision 038). A function of its own so that the app-facing API never holds an
operator's permissions (scans, suppression lifts, PutEvents). Thin: the work is herald.api.admin,
herald.api.console, herald.timeline and herald.suppression_admin."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from herald.api.resolver import OPERATOR_ROUTERS, build_resolver
from herald.api.services import CONTEXT_KEY, OperatorServices
from herald.tracing import LazyTracer

logger = Logger()
tracer = LazyTracer()  # X-Ray on the first sampled invocation, not at cold start (decision 031)

services = OperatorServices.from_environment()  # configuration validated at cold start
app = build_resolver(OPERATOR_ROUTERS)


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    app.append_context(**{CONTEXT_KEY: services})  # cleared by the resolver after each request
    return app.resolve(event, context)
