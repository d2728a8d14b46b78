"""The Pusher Channels sandbox driven by the real `pusher` SDK."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Iterator

import pusher
import pytest
import requests
from pusher.errors import PusherBadAuth, PusherBadRequest

from local.sandboxes import SandboxHost

pytestmark = pytest.mark.integration


def test_trigger_records_one_entry_per_channel(sandbox: SandboxHost, pusher_client: pusher.Pusher) -> None:
    assert pusher_client.trigger(["private-user-1", "private-user-2"], "notification", {"id": "n1"}) == {}

    entries = sandbox.outbox.entries(provider="pusher")
    assert [entry.recipient for entry in entries] == ["private-user-1", "private-user-2"]
    first = entries[0].to_dict()
    assert first["channel"] == "realtime"
    assert first["subject"] == "notification"
    assert json.loads(first["body"]) == {"id": "n1"}
    assert first["delivered_to_subscribers"] is False  # nobody subscribed: Pusher still says 200
    assert first["request"]["channels"] == ["private-user-1", "private-user-2"]


def test_trigger_to_an_occupied_channel_is_delivered(
    sandbox: SandboxHost, pusher_client: pusher.Pusher
) -> None:
    sandbox.pusher.occupy("private-user-3")
    pusher_client.trigger("private-user-3", "notification", {"id": "n2"})

    (entry,) = sandbox.outbox.entries(provider="pusher")
    assert entry.extra["delivered_to_subscribers"] is True


def test_batch_trigger(sandbox: SandboxHost, pusher_client: pusher.Pusher) -> None:
    response = pusher_client.trigger_batch(
        [
            {"channel": "private-a", "name": "one", "data": {"n": 1}},
            {"channel": "private-b", "name": "two", "data": {"n": 2}},
        ]
    )

    assert response == {}
    entries = sandbox.outbox.entries(provider="pusher")
    assert [(entry.recipient, entry.subject) for entry in entries] == [
        ("private-a", "one"),
        ("private-b", "two"),
    ]


def test_batch_over_ten_events_is_rejected(sandbox: SandboxHost, pusher_client: pusher.Pusher) -> None:
    batch = [{"channel": f"c{i}", "name": "e", "data": "{}"} for i in range(11)]
    with pytest.raises(PusherBadRequest):
        pusher_client.trigger_batch(batch, already_encoded=True)
    assert sandbox.outbox.entries() == []


def test_channel_info_and_channel_list(sandbox: SandboxHost, pusher_client: pusher.Pusher) -> None:
    assert pusher_client.channel_info("private-user-9", ["subscription_count"]) == {
        "occupied": False,
        "subscription_count": 0,
    }
    sandbox.pusher.occupy("private-user-9", subscribers=2)
    sandbox.pusher.occupy("presence-room")

    assert pusher_client.channel_info("private-user-9", ["subscription_count"]) == {
        "occupied": True,
        "subscription_count": 2,
    }
    assert pusher_client.channel_info("private-user-9") == {"occupied": True}
    assert pusher_client.channels_info(prefix_filter="private-") == {"channels": {"private-user-9": {}}}
    assert pusher_client.channels_info() == {"channels": {"presence-room": {}, "private-user-9": {}}}
    with pytest.raises(PusherBadRequest):
        pusher_client.channel_info("private-user-9", ["user_count"])  # only for presence channels


def test_wrong_secret_is_rejected_and_nothing_is_recorded(sandbox: SandboxHost) -> None:
    creds = sandbox.credentials.pusher
    forger = pusher.Pusher(
        creds.app_id, creds.key, "not-the-secret", host="127.0.0.1", port=sandbox.port, ssl=False
    )

    with pytest.raises(PusherBadAuth, match="Invalid signature"):
        forger.trigger("private-user-1", "notification", {"id": "forged"})
    with pytest.raises(PusherBadAuth):
        forger.channel_info("private-user-1")
    assert sandbox.outbox.entries() == []


def test_wrong_key_is_rejected(sandbox: SandboxHost) -> None:
    creds = sandbox.credentials.pusher
    client = pusher.Pusher(
        creds.app_id, "other-key", creds.secret, host="127.0.0.1", port=sandbox.port, ssl=False
    )
    with pytest.raises(PusherBadAuth, match="Unknown auth_key"):
        client.trigger("private-user-1", "notification", {})


def _signed(
    sandbox: SandboxHost, body: bytes, timestamp: int, signed_body: bytes | None = None
) -> dict[str, str]:
    """Query parameters signed exactly as the SDK does, optionally over a different body."""
    creds = sandbox.credentials.pusher
    params = {
        "auth_key": creds.key,
        "auth_timestamp": str(timestamp),
        "auth_version": "1.0",
        "body_md5": hashlib.md5(signed_body if signed_body is not None else body).hexdigest(),
    }
    path = f"/apps/{creds.app_id}/events"
    query = "&".join(f"{key}={params[key]}" for key in sorted(params))
    params["auth_signature"] = hmac.new(
        creds.secret.encode(), f"POST\n{path}\n{query}".encode(), hashlib.sha256
    ).hexdigest()
    return params


def test_stale_timestamp_and_tampered_body_are_rejected(sandbox: SandboxHost) -> None:
    url = f"{sandbox.url}/apps/{sandbox.credentials.pusher.app_id}/events"
    body = json.dumps({"name": "e", "channels": ["c"], "data": "{}"}).encode()
    headers = {"Content-Type": "application/json"}

    fresh = requests.post(url, params=_signed(sandbox, body, int(time.time())), data=body, headers=headers)
    stale = requests.post(
        url, params=_signed(sandbox, body, int(time.time()) - 601), data=body, headers=headers
    )
    tampered_body = json.dumps({"name": "e", "channels": ["c"], "data": '{"x":1}'}).encode()
    tampered = requests.post(
        url, params=_signed(sandbox, tampered_body, int(time.time()), signed_body=body), data=tampered_body
    )

    assert fresh.status_code == 200
    assert stale.status_code == 401
    assert "Timestamp expired" in stale.text
    assert tampered.status_code == 401
    assert "body_md5" in tampered.text
    assert len(sandbox.outbox.entries()) == 1


def test_occupancy_webhooks_validate_with_the_sdk(
    sandbox: SandboxHost, pusher_client: pusher.Pusher, capture
) -> None:
    sandbox.pusher.webhook_url = f"{capture.url}/pusher/webhook"

    occupied = sandbox.pusher.occupy("private-user-5")
    again = sandbox.pusher.occupy("private-user-5")  # already occupied: no second webhook
    vacated = sandbox.pusher.vacate("private-user-5")

    assert occupied is not None and occupied.ok
    assert again is None
    assert vacated is not None and vacated.ok
    first, second = capture.wait("/pusher/webhook", 2)
    for request, name in ((first, "channel_occupied"), (second, "channel_vacated")):
        body = pusher_client.validate_webhook(
            request.headers["X-Pusher-Key"], request.headers["X-Pusher-Signature"], request.text
        )
        assert body is not None, "the SDK rejected the sandbox's webhook signature"
        assert body["events"] == [{"name": name, "channel": "private-user-5"}]
        assert abs(body["time_ms"] - time.time() * 1000) < 60_000
    # and a forged one does not validate
    assert pusher_client.validate_webhook(first.headers["X-Pusher-Key"], "0" * 64, first.text) is None


def test_occupancy_through_the_control_endpoint(sandbox: SandboxHost, capture) -> None:
    response = requests.put(f"{sandbox.url}/_pusher/webhook_url", json={"url": f"{capture.url}/hook"})
    assert response.status_code == 200

    occupied = requests.post(f"{sandbox.url}/_pusher/occupy", json={"channel": "private-user-6"}).json()

    assert occupied["webhook"]["status"] == 200
    assert sandbox.pusher.is_occupied("private-user-6")
    assert json.loads(capture.wait("/hook")[0].text)["events"][0]["name"] == "channel_occupied"
    assert requests.get(f"{sandbox.url}/_pusher/channels").json()["channels"] == {"private-user-6": 1}


def test_webhook_url_must_be_loopback(sandbox: SandboxHost) -> None:
    with pytest.raises(ValueError, match="non-loopback"):
        sandbox.pusher.webhook_url = "https://hooks.example.com/pusher"
    response = requests.put(f"{sandbox.url}/_pusher/webhook_url", json={"url": "http://10.0.0.8/hook"})
    assert response.status_code == 400
    assert sandbox.pusher.webhook_url is None


# -- apps connecting and leaving: batched, delayed occupancy webhooks, as Pusher sends them ------

VACATE_DELAY = 0.3
BATCH_WINDOW = 0.08


@pytest.fixture
def apps(sandbox: SandboxHost, capture) -> Iterator[SandboxHost]:
    """Short Pusher timings for the test, webhooks to the capture server; restored afterwards."""
    saved = (sandbox.pusher.vacate_delay_seconds, sandbox.pusher.batch_window_seconds)
    sandbox.pusher.vacate_delay_seconds, sandbox.pusher.batch_window_seconds = VACATE_DELAY, BATCH_WINDOW
    sandbox.pusher.webhook_url = f"{capture.url}/pusher/webhook"
    try:
        yield sandbox
    finally:
        sandbox.pusher.reset()
        sandbox.pusher.vacate_delay_seconds, sandbox.pusher.batch_window_seconds = saved


def _events(pusher_client: pusher.Pusher, captured) -> list[list[dict[str, str]]]:
    """Each captured webhook's events, after the SDK has validated its key and signature."""
    bodies = []
    for request in captured:
        body = pusher_client.validate_webhook(
            request.headers["X-Pusher-Key"], request.headers["X-Pusher-Signature"], request.text
        )
        assert body is not None, "the SDK rejected the sandbox's webhook signature"
        assert abs(body["time_ms"] - time.time() * 1000) < 60_000
        bodies.append(body["events"])
    return bodies


def test_connect_sends_one_signed_occupied_webhook(
    apps: SandboxHost, pusher_client: pusher.Pusher, capture
) -> None:
    # GIVEN no app of user 41 is connected
    # WHEN two of its apps connect through the control endpoint
    first = requests.post(f"{apps.url}/_pusher/connect", json={"user_id": "41"})
    second = requests.post(f"{apps.url}/_pusher/connect", json={"user_id": "41"})

    # THEN the channel counts both, and exactly one channel_occupied webhook is sent
    assert first.json() == {"user_id": "41", "channel": "private-user-41", "connections": 1}
    assert second.json()["connections"] == 2
    assert apps.pusher.wait_idle(timeout=5)
    assert _events(pusher_client, capture.requests("/pusher/webhook")) == [
        [{"name": "channel_occupied", "channel": "private-user-41"}]
    ]
    assert apps.pusher.is_occupied("private-user-41")


def test_one_of_two_connections_leaving_sends_nothing(
    apps: SandboxHost, pusher_client: pusher.Pusher, capture
) -> None:
    # GIVEN user 42 is connected from two apps
    apps.pusher.connect("42")
    apps.pusher.connect("42")
    capture.wait("/pusher/webhook")

    # WHEN one app leaves
    left = requests.post(f"{apps.url}/_pusher/disconnect", json={"user_id": "42"}).json()

    # THEN the channel stays occupied and no channel_vacated follows, even after the delay
    assert left["connections"] == 1 and left["vacated_in_ms"] is None
    time.sleep(VACATE_DELAY + BATCH_WINDOW + 0.1)
    assert apps.pusher.vacating_channels() == []
    assert _events(pusher_client, capture.requests("/pusher/webhook")) == [
        [{"name": "channel_occupied", "channel": "private-user-42"}]
    ]
    assert apps.pusher.is_occupied("private-user-42")


def test_last_connection_leaving_sends_vacated_after_the_delay_not_before(
    apps: SandboxHost, pusher_client: pusher.Pusher, capture
) -> None:
    # GIVEN user 43 is connected from one app
    apps.pusher.connect("43")
    capture.wait("/pusher/webhook")

    # WHEN it leaves
    left_at = time.monotonic()
    left = requests.post(f"{apps.url}/_pusher/disconnect", json={"user_id": "43"}).json()

    # THEN nothing is sent during the delay ...
    assert left == {
        "user_id": "43",
        "channel": "private-user-43",
        "connections": 0,
        "vacated_in_ms": int(VACATE_DELAY * 1000),
    }
    time.sleep(VACATE_DELAY / 2)
    assert len(capture.requests("/pusher/webhook")) == 1
    assert apps.pusher.vacating_channels() == ["private-user-43"]
    # ... and channel_vacated arrives once it has passed
    captured = capture.wait("/pusher/webhook", 2)
    assert time.monotonic() - left_at >= VACATE_DELAY
    assert _events(pusher_client, captured)[1] == [{"name": "channel_vacated", "channel": "private-user-43"}]
    assert not apps.pusher.is_occupied("private-user-43")


def test_reconnect_within_the_delay_sends_no_webhook(
    apps: SandboxHost, pusher_client: pusher.Pusher, capture
) -> None:
    # GIVEN user 44 was connected and its only app has just left
    apps.pusher.connect("44")
    capture.wait("/pusher/webhook")
    assert apps.pusher.disconnect("44") == 0

    # WHEN it reconnects before the vacate delay has passed
    time.sleep(VACATE_DELAY / 3)
    assert apps.pusher.connect("44") == 1

    # THEN neither channel_vacated nor a second channel_occupied is sent
    time.sleep(VACATE_DELAY + BATCH_WINDOW + 0.1)
    assert apps.pusher.wait_idle(timeout=5)
    assert _events(pusher_client, capture.requests("/pusher/webhook")) == [
        [{"name": "channel_occupied", "channel": "private-user-44"}]
    ]
    assert apps.pusher.is_occupied("private-user-44")


def test_events_close_together_share_one_webhook_body(
    apps: SandboxHost, pusher_client: pusher.Pusher, capture
) -> None:
    # GIVEN user 45 is connected and about to leave, and user 46 is not connected
    apps.pusher.vacate_delay_seconds = 0  # vacated goes into the next batch at once
    apps.pusher.connect("45")
    capture.wait("/pusher/webhook")

    # WHEN 45 leaves and 46 connects within one batch window
    apps.pusher.disconnect("45")
    apps.pusher.connect("46")

    # THEN Pusher's single batched body carries both events, in order
    assert apps.pusher.wait_idle(timeout=5)
    assert _events(pusher_client, capture.requests("/pusher/webhook"))[1:] == [
        [
            {"name": "channel_vacated", "channel": "private-user-45"},
            {"name": "channel_occupied", "channel": "private-user-46"},
        ]
    ]


def test_disconnect_without_a_connection_and_bad_user_ids_are_refused(apps: SandboxHost, capture) -> None:
    unknown = requests.post(f"{apps.url}/_pusher/disconnect", json={"user_id": "nobody"})
    invalid = requests.post(f"{apps.url}/_pusher/connect", json={"user_id": "a b"})
    missing = requests.post(f"{apps.url}/_pusher/connect", json={})

    assert unknown.status_code == 409
    assert invalid.status_code == 400
    assert missing.status_code == 400
    assert apps.pusher.occupied_channels() == {}
    assert apps.pusher.wait_idle(timeout=5)
    assert capture.requests("/pusher/webhook") == []


def test_timings_are_configurable_through_the_control_endpoint(apps: SandboxHost) -> None:
    timings = {"vacate_delay_ms": 1500, "batch_window_ms": 20}
    changed = requests.put(f"{apps.url}/_pusher/config", json=timings)
    negative = requests.put(f"{apps.url}/_pusher/config", json={"vacate_delay_ms": -1})

    assert changed.json() == timings
    assert negative.status_code == 400
    assert requests.get(f"{apps.url}/_pusher/config").json() == timings
    assert apps.pusher.vacate_delay_seconds == 1.5
