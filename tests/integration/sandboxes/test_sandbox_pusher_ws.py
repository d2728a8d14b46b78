"""The Pusher sandbox's WebSocket side, spoken to as pusher-js speaks (PLATFORM.md's captured
protocol), with subscriptions authorized by the real `pusher` SDK's `authenticate` (what Herald's
`/v1/pusher/auth` answers) and events triggered by the SDK through the HTTP API."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from typing import Any

import pusher
import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect

from local.sandboxes import SandboxHost

pytestmark = pytest.mark.integration

VACATE_DELAY = 0.3
BATCH_WINDOW = 0.05
QUERY = "?protocol=7&client=js&version=8.6.0&flash=false"


class Client:
    """A pusher-js stand-in: one socket, its id, and JSON frames in and out."""

    def __init__(self, connection: ClientConnection) -> None:
        self.connection = connection
        established = self.receive()
        assert established["event"] == "pusher:connection_established"
        self.established = json.loads(established["data"])
        self.socket_id: str = self.established["socket_id"]

    def send(self, event: str, data: dict[str, Any]) -> None:
        self.connection.send(json.dumps({"event": event, "data": data}))

    def receive(self, timeout: float = 5.0) -> dict[str, Any]:
        return json.loads(self.connection.recv(timeout=timeout))

    def subscribe(self, channel: str, auth: str | None) -> dict[str, Any]:
        self.send("pusher:subscribe", {"channel": channel, **({"auth": auth} if auth else {})})
        return self.receive()

    def close(self) -> None:
        self.connection.close()


@pytest.fixture
def live(sandbox: SandboxHost, capture) -> Iterator[SandboxHost]:
    """Short Pusher timings, occupancy webhooks to the capture server; restored afterwards."""
    saved = (sandbox.pusher.vacate_delay_seconds, sandbox.pusher.batch_window_seconds)
    sandbox.pusher.vacate_delay_seconds, sandbox.pusher.batch_window_seconds = VACATE_DELAY, BATCH_WINDOW
    sandbox.pusher.webhook_url = f"{capture.url}/pusher/webhook"
    try:
        yield sandbox
    finally:
        sandbox.pusher.reset()
        sandbox.pusher.vacate_delay_seconds, sandbox.pusher.batch_window_seconds = saved


@pytest.fixture
def client(live: SandboxHost) -> Iterator[Any]:
    """Opens pusher-js-like sockets on the sandbox's app; closes whatever is left at the end."""
    opened: list[Client] = []

    def open_socket() -> Client:
        key = live.credentials.pusher.key
        socket = Client(connect(f"{live.pusher_ws.url}/app/{key}{QUERY}", open_timeout=5))
        opened.append(socket)
        return socket

    yield open_socket
    for socket in opened:
        socket.close()


def authorized(pusher_client: pusher.Pusher, socket: Client, channel: str) -> str:
    return str(pusher_client.authenticate(channel, socket.socket_id)["auth"])


def webhook_events(pusher_client: pusher.Pusher, capture) -> list[dict[str, str]]:
    """Every occupancy event the capture server got, each body validated by the SDK."""
    events = []
    for request in capture.requests("/pusher/webhook"):
        body = pusher_client.validate_webhook(
            request.headers["X-Pusher-Key"], request.headers["X-Pusher-Signature"], request.text
        )
        assert body is not None, "the SDK rejected the sandbox's webhook signature"
        events += body["events"]
    return events


def test_a_connection_is_established_with_a_socket_id_and_an_activity_timeout(client: Any) -> None:
    socket = client()

    assert re.fullmatch(r"\d+\.\d+", socket.socket_id)
    assert socket.established["activity_timeout"] == 120
    socket.send("pusher:ping", {})
    assert socket.receive() == {"event": "pusher:pong", "data": "{}"}


def test_a_wrong_app_key_and_an_unsupported_protocol_are_refused(live: SandboxHost) -> None:
    for path, code in ((f"/app/nope{QUERY}", 4001), (f"/app/{live.credentials.pusher.key}?protocol=2", 4007)):
        with connect(f"{live.pusher_ws.url}{path}", open_timeout=5) as socket:
            error = json.loads(socket.recv(timeout=5))
            assert error["event"] == "pusher:error"
            assert error["data"]["code"] == code
            with pytest.raises(ConnectionClosed):
                socket.recv(timeout=5)
            assert socket.close_code == code
    with pytest.raises(InvalidStatus) as not_found:
        connect(f"{live.pusher_ws.url}/somewhere", open_timeout=5)
    assert not_found.value.response.status_code == 404


def test_an_authorized_subscription_occupies_the_channel_and_receives_triggered_events(
    live: SandboxHost, client: Any, pusher_client: pusher.Pusher, capture
) -> None:
    # GIVEN a socket subscribed to private-user-70 with the auth the SDK signs
    socket = client()
    succeeded = socket.subscribe("private-user-70", authorized(pusher_client, socket, "private-user-70"))
    assert succeeded == {
        "event": "pusher_internal:subscription_succeeded",
        "channel": "private-user-70",
        "data": "{}",
    }

    # THEN Pusher's signed channel_occupied webhook goes out, and the channel info says so
    capture.wait("/pusher/webhook")
    assert webhook_events(pusher_client, capture) == [
        {"name": "channel_occupied", "channel": "private-user-70"}
    ]
    assert pusher_client.channel_info("private-user-70", ["subscription_count"]) == {
        "occupied": True,
        "subscription_count": 1,
    }

    # WHEN the SDK triggers an event on it (and another on a channel nobody joined)
    pusher_client.trigger("private-user-70", "notification", {"title": "Hi", "body": "there"})
    pusher_client.trigger("private-user-71", "notification", {"title": "not yours"})

    # THEN the socket gets exactly its channel's event, its data a JSON string
    event = socket.receive()
    assert event["event"] == "notification" and event["channel"] == "private-user-70"
    assert json.loads(event["data"]) == {"title": "Hi", "body": "there"}
    with pytest.raises(TimeoutError):
        socket.receive(timeout=0.3)
    sockets = {e.recipient: e.extra["sockets"] for e in live.outbox.entries(provider="pusher")}
    assert sockets == {"private-user-70": 1, "private-user-71": 0}


def test_a_wrong_or_missing_signature_is_refused_with_4009_and_subscribes_nothing(
    live: SandboxHost, client: Any, pusher_client: pusher.Pusher, capture
) -> None:
    socket, other = client(), client()
    for auth in (
        authorized(pusher_client, other, "private-user-72"),  # signed for another socket
        authorized(pusher_client, socket, "private-user-73"),  # signed for another channel
        None,
    ):
        refused = socket.subscribe("private-user-72", auth)
        assert refused["event"] == "pusher:error" and refused["data"]["code"] == 4009
    presence = socket.subscribe("presence-user-72", authorized(pusher_client, socket, "presence-user-72"))
    assert presence["event"] == "pusher:error"

    pusher_client.trigger("private-user-72", "notification", {"title": "x"})
    with pytest.raises(TimeoutError):
        socket.receive(timeout=0.3)
    assert live.pusher_ws.sockets()[socket.socket_id] == []
    assert live.pusher.wait_idle(timeout=5)
    assert capture.requests("/pusher/webhook") == []


def test_the_last_subscriber_leaving_vacates_the_channel_after_the_delay(
    live: SandboxHost, client: Any, pusher_client: pusher.Pusher, capture
) -> None:
    # GIVEN two sockets on private-user-74 (one channel_occupied)
    first, second = client(), client()
    for socket in (first, second):
        socket.subscribe("private-user-74", authorized(pusher_client, socket, "private-user-74"))
    capture.wait("/pusher/webhook")

    # WHEN one unsubscribes, nothing is sent; WHEN the other's connection closes (a page closed) ...
    first.send("pusher:unsubscribe", {"channel": "private-user-74"})
    time.sleep(VACATE_DELAY + BATCH_WINDOW + 0.1)
    assert len(capture.requests("/pusher/webhook")) == 1
    assert live.pusher.is_occupied("private-user-74")
    closed_at = time.monotonic()
    second.close()

    # THEN channel_vacated follows, once Pusher's delay has passed
    capture.wait("/pusher/webhook", 2)
    assert time.monotonic() - closed_at >= VACATE_DELAY
    assert webhook_events(pusher_client, capture) == [
        {"name": "channel_occupied", "channel": "private-user-74"},
        {"name": "channel_vacated", "channel": "private-user-74"},
    ]
    assert not live.pusher.is_occupied("private-user-74")
    assert second.socket_id not in live.pusher_ws.sockets()


def test_a_reset_closes_the_sockets_asking_them_to_reconnect(
    live: SandboxHost, client: Any, pusher_client: pusher.Pusher
) -> None:
    socket = client()
    socket.subscribe("private-user-75", authorized(pusher_client, socket, "private-user-75"))

    live.reset()

    with pytest.raises(ConnectionClosed):
        socket.receive()
    assert socket.connection.close_code == 4200  # pusher-js reconnects at once
    assert live.pusher.occupied_channels() == {}
