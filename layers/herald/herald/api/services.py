"""What the API's routers work with: the function's settings and its DynamoDB client.

The API function builds one `Services` at its cold start (`Services.from_environment()`) and hands
it to the resolver on every invocation (`app.append_context(services=...)`); routers read it with
`services(router)` and build their (cheap) stores from it per request. Nothing is cached in this
package, so a second cold start in the same process (the local stack, the tests) gets clients for
its own environment, never the first one's endpoint.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import boto3
from aws_lambda_powertools.event_handler.api_gateway import BaseRouter

from herald.settings import ApiSettings, Tables, load

CONTEXT_KEY = "services"


@dataclass(frozen=True)
class Services:
    settings: ApiSettings
    dynamodb: Any

    @classmethod
    def from_environment(cls) -> Services:
        """Configuration validated now (a cold start fails loudly, not the first request)."""
        return cls(settings=load(ApiSettings), dynamodb=boto3.client("dynamodb"))

    @property
    def tables(self) -> Tables:
        return self.settings.tables


def services(router: BaseRouter) -> Services:
    found = router.context.get(CONTEXT_KEY)
    if not isinstance(found, Services):
        raise RuntimeError("the API function did not hand its services to the resolver")
    return found
