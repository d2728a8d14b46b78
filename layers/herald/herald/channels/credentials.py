"""Provider credentials from Secrets Manager, read through powertools Parameters (cached).

A provider client is built from its secret's JSON on first use and rebuilt when the secret's
value changes (rotation), so a cold start never calls Secrets Manager and a warm container calls
it at most once per `max_age` seconds per secret.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from typing import Any

from aws_lambda_powertools.utilities import parameters


class ProviderUnavailable(RuntimeError):
    """The provider's secret is missing, empty or malformed: its sends are retried later."""


class SecretSource:
    """Reads secrets by name or ARN through a powertools `SecretsProvider` of its own (built at cold
    start with its own client and cache), unless a test injects `fetch`.

    Not the module-level `parameters.get_secret`: its provider is created once per process and
    keeps the endpoint it first saw, which the local stack (several stacks in one process, each on
    its own moto server) must not inherit."""

    def __init__(self, max_age: int = 300, fetch: Callable[..., Any] | None = None) -> None:
        self._max_age = max_age
        self._fetch = fetch or parameters.SecretsProvider().get

    def text(self, secret_id: str) -> str:
        try:
            value = self._fetch(secret_id, max_age=self._max_age)
        except Exception as error:  # powertools wraps every SDK error in GetParameterError
            raise ProviderUnavailable(f"secret {secret_id!r} could not be read: {error}") from error
        if isinstance(value, bytes):
            value = value.decode()
        if not isinstance(value, str) or not value.strip():
            raise ProviderUnavailable(f"secret {secret_id!r} is empty")
        return value

    def json(self, secret_id: str) -> dict[str, Any]:
        text = self.text(secret_id)
        try:
            value = json.loads(text)
        except json.JSONDecodeError as error:
            raise ProviderUnavailable(f"secret {secret_id!r} is not JSON") from error
        if not isinstance(value, dict):
            raise ProviderUnavailable(f"secret {secret_id!r} is not a JSON object")
        return value


class SecretBacked[T]:
    """A provider built from a secret's JSON, rebuilt when that JSON changes."""

    def __init__(self, secrets: SecretSource, secret_id: str, build: Callable[[dict[str, Any]], T]) -> None:
        self._secrets = secrets
        self._secret_id = secret_id
        self._build = build
        self._lock = threading.Lock()
        self._value: dict[str, Any] | None = None
        self._provider: T | None = None

    def get(self) -> T:
        """The provider for the current secret value; raises ProviderUnavailable."""
        value = self._secrets.json(self._secret_id)
        with self._lock:
            if self._provider is None or value != self._value:
                try:
                    provider = self._build(value)
                except (KeyError, TypeError, ValueError) as error:
                    raise ProviderUnavailable(
                        f"secret {self._secret_id!r} does not configure the provider: {error!r}"
                    ) from error
                previous, self._provider, self._value = self._provider, provider, value
                close = getattr(previous, "close", None)
                if callable(close):
                    close()  # e.g. the firebase-admin app of the rotated credentials
            return self._provider
