"""Provider credentials: read through powertools Parameters, providers rebuilt on rotation, and an
unreadable secret turned into retry-later instead of a crash."""

from __future__ import annotations

import json
from typing import Any

import pytest

from herald.channels.credentials import ProviderUnavailable, SecretBacked, SecretSource
from herald.channels.lazy import LazyEmailProvider, LazyPushProvider, LazyRealtimeProvider, LazySmsProvider
from herald.channels.ports import OutgoingEmail, OutgoingSms, PushNotification, RealtimeEvent
from herald.channels.result import CREDENTIALS_UNAVAILABLE, Accepted, RetryLater
from herald.channels.webhook_delivery import secret_id, signing_secret

pytestmark = pytest.mark.unit


class FakeSecrets:
    def __init__(self, values: dict[str, Any]) -> None:
        self.values = values
        self.calls: list[tuple[str, int | None]] = []

    def __call__(self, name: str, max_age: int | None = None, **_: Any) -> Any:
        self.calls.append((name, max_age))
        if name not in self.values:
            raise RuntimeError("ResourceNotFoundException")
        return self.values[name]


class Built:
    def __init__(self, secret: dict[str, Any]) -> None:
        self.key = secret["api_key"]
        self.closed = False

    def close(self) -> None:
        self.closed = True


def test_the_provider_is_built_once_and_rebuilt_when_the_secret_rotates() -> None:
    fetch = FakeSecrets({"arn:sg": json.dumps({"api_key": "one"})})
    backed = SecretBacked(SecretSource(max_age=300, fetch=fetch), "arn:sg", Built)
    first = backed.get()
    assert backed.get() is first
    assert fetch.calls == [("arn:sg", 300), ("arn:sg", 300)]  # powertools caches for max_age
    fetch.values["arn:sg"] = json.dumps({"api_key": "two"})
    second = backed.get()
    assert (second.key, first.closed) == ("two", True)


@pytest.mark.parametrize("value", [None, "", "not json", "[1, 2]", json.dumps({"no_api_key": 1})])
def test_an_unusable_secret_makes_the_provider_unavailable(value: Any) -> None:
    fetch = FakeSecrets({} if value is None else {"arn:sg": value})
    backed = SecretBacked(SecretSource(fetch=fetch), "arn:sg", Built)
    with pytest.raises(ProviderUnavailable):
        backed.get()


def test_lazy_ports_turn_an_unavailable_provider_into_retry_later() -> None:
    missing = SecretBacked(SecretSource(fetch=FakeSecrets({})), "arn:none", Built)
    email = OutgoingEmail(sender="a@example.com", to="b@example.com", subject="s", text="t")
    push = PushNotification("t", "b", {}, "c", "high", 10)
    results = [
        LazyEmailProvider("sendgrid", missing).send(email),  # type: ignore[arg-type]
        LazySmsProvider("twilio", missing).send(OutgoingSms("+14155550100", "hi")),  # type: ignore[arg-type]
        LazyRealtimeProvider("pusher", missing).publish(RealtimeEvent("c", "e", {})),  # type: ignore[arg-type]
        *LazyPushProvider("fcm", missing).send(push, ["t1", "t2"]),  # type: ignore[arg-type]
    ]
    assert len(results) == 5
    assert all(isinstance(r, RetryLater) and r.code == CREDENTIALS_UNAVAILABLE for r in results)


def test_lazy_ports_delegate_when_available() -> None:
    class Email:
        name = "sendgrid"

        def __init__(self, secret: dict[str, Any]) -> None:
            pass

        def send(self, email: OutgoingEmail) -> Accepted:
            return Accepted("sendgrid", "m-1")

    backed = SecretBacked(SecretSource(fetch=FakeSecrets({"arn": "{}"})), "arn", Email)
    email = OutgoingEmail(sender="a@example.com", to="b@example.com", subject="s", text="t")
    assert LazyEmailProvider("sendgrid", backed).send(email) == Accepted("sendgrid", "m-1")  # type: ignore[arg-type]


def test_webhook_secrets_live_under_the_prefix() -> None:
    prefix = "herald/dev/webhooks/"
    assert secret_id(prefix, "orders") == "herald/dev/webhooks/orders"
    assert secret_id(prefix, "herald/dev/webhooks/orders") == "herald/dev/webhooks/orders"
    assert secret_id(prefix, "arn:aws:secretsmanager:x") == "arn:aws:secretsmanager:x"
    assert signing_secret(" whsec_1 ") == "whsec_1"
    assert signing_secret('{"secret": "whsec_2"}') == "whsec_2"
    assert signing_secret('{"signing_secret": "whsec_3"}') == "whsec_3"
