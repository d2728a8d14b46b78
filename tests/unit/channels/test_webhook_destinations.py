"""Webhook destinations: https to public addresses only, every resolved address checked, the
connection made to the checked address; loopback only where the local stack allows it.

Name resolution is a fake and `socket.create_connection` is replaced by a recorder that refuses
the connection, so no test here opens a socket or asks a DNS server anything."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

from herald.channels import webhook_http
from herald.channels.ports import WebhookDelivery
from herald.channels.result import TRANSPORT, PermanentFailure, RetryLater
from herald.channels.settings import WebhookSenderSettings
from herald.channels.webhook_http import DESTINATION_REFUSED, UrllibWebhookTransport
from local.provision import LOCAL_ONLY_ENVIRONMENT

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[3]
PUBLIC = "93.184.216.34"


class FakeDns:
    def __init__(self, answers: dict[str, Sequence[str]]) -> None:
        self.answers = answers
        self.asked: list[tuple[str, int]] = []

    def __call__(self, host: str, port: int) -> Sequence[str]:
        self.asked.append((host, port))
        if host not in self.answers:
            raise OSError(f"[Errno -2] Name or service not known: {host}")
        return self.answers[host]


@pytest.fixture
def connections(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int]]:
    """Every (address, port) the transport tries to connect to; each attempt is refused."""
    attempts: list[tuple[str, int]] = []

    def refuse(address: tuple[str, int], *args: Any, **kwargs: Any) -> Any:
        attempts.append(address)
        raise ConnectionRefusedError(111, "Connection refused")

    monkeypatch.setattr(webhook_http.socket, "create_connection", refuse)
    return attempts


def post(url: str, dns: FakeDns | None = None, *, allow_loopback: bool = False) -> Any:
    transport = UrllibWebhookTransport(
        timeout=1, allow_loopback=allow_loopback, resolve=dns or FakeDns({"hooks.example.com": [PUBLIC]})
    )
    return transport.post(WebhookDelivery(url, b"{}", "secret", "ntf-1", "order_webhook"))


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://hooks.example.com/h", "must use https"),
        ("https://127.0.0.1/h", "loopback"),
        ("https://10.1.2.3/h", "private"),
        ("https://192.168.0.10:8443/h", "private"),
        ("https://169.254.169.254/latest/meta-data/", "metadata"),
        ("https://[fd00:ec2::254]/latest/meta-data/", "metadata"),
        ("https://[::ffff:169.254.169.254]/", "metadata"),
        ("https://[::ffff:10.0.0.1]/", "private"),
        ("https://[::ffff:127.0.0.1]/", "loopback"),
        ("https://[::1]/", "loopback"),
        ("https://[fe80::1]/", "link-local"),
        ("https://169.254.10.10/", "link-local"),
        ("https://224.0.0.251/", "multicast"),
        ("https://0.0.0.0/", "unspecified"),
        ("https://100.64.0.1/", "non-public"),
        ("https://240.0.0.1/", "reserved"),
        ("ftp://hooks.example.com/h", "absolute https URL"),
        ("https://hooks.example.com:99999/h", "malformed"),
    ],
)
def test_a_destination_that_is_not_public_https_is_refused_for_good(
    url: str, why: str, connections: list[tuple[str, int]]
) -> None:
    result = post(url)

    assert isinstance(result, PermanentFailure)
    assert result.code == DESTINATION_REFUSED
    assert why in result.reason
    assert connections == []  # refused before any connection


@pytest.mark.parametrize(
    "answers",
    [["10.0.0.5"], [PUBLIC, "10.0.0.5"], ["169.254.169.254"], ["::ffff:192.168.1.1"], [PUBLIC, "::1"]],
    ids=["private", "one of several", "metadata", "mapped private", "loopback among public"],
)
def test_a_hostname_is_refused_when_any_address_it_resolves_to_is_not_public(
    answers: list[str], connections: list[tuple[str, int]]
) -> None:
    dns = FakeDns({"internal.example.com": answers})

    result = post("https://internal.example.com/hook", dns)

    assert isinstance(result, PermanentFailure) and result.code == DESTINATION_REFUSED
    assert "internal.example.com resolves to" in result.reason
    assert connections == []


def test_the_connection_goes_to_the_address_that_was_checked(connections: list[tuple[str, int]]) -> None:
    dns = FakeDns({"hooks.example.com": [PUBLIC, "2606:2800:220:1:248:1893:25c8:1946"]})

    result = post("https://hooks.example.com/h", dns)

    # one lookup only (no second resolution a rebinding DNS could answer differently), then each
    # checked address in turn; both refused here, so the receiver counts as unreachable
    assert dns.asked == [("hooks.example.com", 443)]
    assert connections == [(PUBLIC, 443), ("2606:2800:220:1:248:1893:25c8:1946", 443)]
    assert isinstance(result, RetryLater) and result.code == TRANSPORT


def test_a_host_that_does_not_resolve_now_is_retried(connections: list[tuple[str, int]]) -> None:
    result = post("https://gone.example.com/h", FakeDns({}))

    assert isinstance(result, RetryLater) and result.code == TRANSPORT
    assert connections == []


def test_the_local_stack_may_call_loopback_over_http(connections: list[tuple[str, int]]) -> None:
    result = post("http://127.0.0.1:4010/receivers/acme", allow_loopback=True)

    assert isinstance(result, RetryLater)  # it tried: the recorder refused the connection
    assert connections == [("127.0.0.1", 4010)]


@pytest.mark.parametrize(
    ("url", "answers"),
    [
        ("http://hooks.example.com/h", [PUBLIC]),
        ("https://10.0.0.1/h", []),
        ("https://169.254.169.254/", []),
        ("http://mixed.example.com/h", ["127.0.0.1", PUBLIC]),
    ],
)
def test_allowing_loopback_allows_nothing_else(
    url: str, answers: list[str], connections: list[tuple[str, int]]
) -> None:
    dns = FakeDns({"hooks.example.com": answers, "mixed.example.com": answers})

    result = post(url, dns, allow_loopback=True)

    assert isinstance(result, PermanentFailure) and result.code == DESTINATION_REFUSED
    assert connections == []


def test_only_the_local_stack_allows_loopback() -> None:
    template = yaml.load((REPO / "template.yaml").read_text(), Loader=_Loader)
    variables = {
        name
        for resource in template["Resources"].values()
        for name in ((resource.get("Properties") or {}).get("Environment") or {}).get("Variables", {})
    } | set((template.get("Globals", {}).get("Function", {}).get("Environment") or {}).get("Variables", {}))

    assert "WEBHOOK_ALLOW_LOOPBACK" not in variables
    assert LOCAL_ONLY_ENVIRONMENT["WEBHOOK_ALLOW_LOOPBACK"] == "true"
    field = WebhookSenderSettings.model_fields["webhook_allow_loopback"]
    assert field.default is False and field.alias == "WEBHOOK_ALLOW_LOOPBACK"


class _Loader(yaml.SafeLoader):
    """template.yaml with its CloudFormation tags read as plain values."""


_Loader.add_multi_constructor("!", lambda loader, suffix, node: None)
