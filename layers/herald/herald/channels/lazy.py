"""Ports whose provider is built from a Secrets Manager secret on first use (see `credentials`).

A secret that cannot be read or does not configure the provider is a `RetryLater` with code
`credentials_unavailable`: the message backs off and, if nobody fixes the secret, ends in the DLQ.
"""

from __future__ import annotations

from collections.abc import Sequence

from herald.channels.credentials import ProviderUnavailable, SecretBacked
from herald.channels.ports import (
    EmailProvider,
    OutgoingEmail,
    OutgoingSms,
    PushBatchItem,
    PushNotification,
    PushProvider,
    RealtimeEvent,
    RealtimeProvider,
    SmsProvider,
)
from herald.channels.result import CREDENTIALS_UNAVAILABLE, RetryLater, SendResult


def _unavailable(name: str, error: ProviderUnavailable) -> RetryLater:
    return RetryLater(name, str(error), code=CREDENTIALS_UNAVAILABLE)


class LazyEmailProvider:
    def __init__(self, name: str, source: SecretBacked[EmailProvider]) -> None:
        self.name = name
        self._source = source

    def send(self, email: OutgoingEmail) -> SendResult:
        try:
            provider = self._source.get()
        except ProviderUnavailable as error:
            return _unavailable(self.name, error)
        return provider.send(email)


class LazyPushProvider:
    def __init__(self, name: str, source: SecretBacked[PushProvider]) -> None:
        self.name = name
        self._source = source

    def send(self, push: PushNotification, tokens: Sequence[str]) -> list[SendResult]:
        try:
            provider = self._source.get()
        except ProviderUnavailable as error:
            return [_unavailable(self.name, error) for _ in tokens]
        return provider.send(push, tokens)

    def send_batch(self, pushes: Sequence[PushBatchItem]) -> list[list[SendResult]]:
        try:
            provider = self._source.get()
        except ProviderUnavailable as error:
            return [[_unavailable(self.name, error) for _ in tokens] for _, tokens in pushes]
        return provider.send_batch(pushes)


class LazySmsProvider:
    def __init__(self, name: str, source: SecretBacked[SmsProvider]) -> None:
        self.name = name
        self._source = source

    def send(self, sms: OutgoingSms) -> SendResult:
        try:
            provider = self._source.get()
        except ProviderUnavailable as error:
            return _unavailable(self.name, error)
        return provider.send(sms)


class LazyRealtimeProvider:
    def __init__(self, name: str, source: SecretBacked[RealtimeProvider]) -> None:
        self.name = name
        self._source = source

    def publish(self, event: RealtimeEvent) -> SendResult:
        try:
            provider = self._source.get()
        except ProviderUnavailable as error:
            return _unavailable(self.name, error)
        return provider.publish(event)
