"""One local stack for the whole e2e session, driven only through its public surfaces."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from local.stack import LocalStack

FALLBACK_DELAY_SECONDS = 30


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    """Module-scoped: stopped (threads joined, moto's in-process state reset) before other suites run."""
    state = tmp_path_factory.mktemp("local") / "stack.json"
    with LocalStack(
        aws_port=0,
        sandbox_port=0,
        api_port=0,
        parameters={"FallbackDelaySeconds": FALLBACK_DELAY_SECONDS},
        state_file=state,
    ) as running:
        yield running
        assert running.moto
        running.moto.reset()


def http_json(
    url: str, *, method: str = "GET", body: Any = None, headers: dict[str, str] | None = None
) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        url, data=data, method=method, headers={"Content-Type": "application/json", **(headers or {})}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        text = response.read().decode()
    return json.loads(text) if text else None


def outbox(stack: LocalStack, **filters: str) -> list[dict[str, Any]]:
    """The sandboxes' outbox, over HTTP (`GET /_outbox`)."""
    assert stack.sandbox
    query = urllib.parse.urlencode(filters)
    entries = http_json(f"{stack.sandbox.url}/_outbox" + (f"?{query}" if query else ""))
    return entries if isinstance(entries, list) else entries["entries"]


def emails_to(stack: LocalStack, address: str) -> list[dict[str, Any]]:
    """The messages SES (moto) accepted for `address`, from moto's state (`/moto-api/data.json`)."""
    assert stack.moto
    ses = moto_state(stack)["ses"]
    return [
        m
        for m in ses.get("RawMessage", []) + ses.get("Message", [])
        if address in json.dumps(m.get("destinations"))
    ]


def moto_state(stack: LocalStack, attempts: int = 5) -> dict[str, Any]:
    """moto's whole state. moto serialises it live, without a lock, so a dump taken while a function
    writes can fail with a 500 (a dict changed size during iteration): such a dump is taken again,
    never read as empty (a "no email was sent" assertion must not pass on a failed read)."""
    assert stack.moto
    for attempt in range(attempts):
        try:
            return http_json(f"{stack.moto.url}/moto-api/data.json")
        except urllib.error.HTTPError as error:
            if error.code < 500 or attempt == attempts - 1:
                raise
            time.sleep(0.2)
    raise AssertionError("unreachable")


def wait_until[T](probe: Callable[[], T], timeout: float = 30.0, interval: float = 0.5) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)


def put_bus_event(stack: LocalStack, detail_type: str, detail: dict[str, Any]) -> None:
    """One event on the Herald bus, as a producer sends it (`events:PutEvents`)."""
    response = stack.client("events").put_events(
        Entries=[
            {
                "EventBusName": stack.bus_name,
                "Source": "tests.e2e",
                "DetailType": detail_type,
                "Detail": json.dumps(detail),
            }
        ]
    )
    assert response["FailedEntryCount"] == 0, response


def put_event(stack: LocalStack, detail: dict[str, Any]) -> None:
    put_bus_event(stack, "NotificationRequested", detail)
