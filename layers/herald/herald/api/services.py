"""What the API's routers work with, built once per execution environment from the function's
environment (`ApiSettings`): the DynamoDB client, the table names, the catalog and the renderer.
Each router module builds its own store from these (`@cache`d), so modules stay independent."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any

import boto3

from herald.settings import ApiSettings, Tables, api_settings


@dataclass(frozen=True)
class Services:
    settings: ApiSettings
    dynamodb: Any

    @property
    def tables(self) -> Tables:
        return self.settings.tables


@cache
def services() -> Services:
    return Services(settings=api_settings(), dynamodb=boto3.client("dynamodb"))


def reset() -> None:
    """Forget the built services (tests that provision a new stack per test)."""
    services.cache_clear()
    api_settings.cache_clear()
