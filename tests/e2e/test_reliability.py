"""The reliability suite (local/soak.py) at `make test` size, on its own local stack.

Every scenario goes in through the bus and is judged by what the provider sandboxes accepted, the
stack's dead-letter queues and delivery logs (`make soak` plays the same at full size).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from local.soak import PROVIDER_CHANNEL, Config, ScenarioResult, Soak, soak_stack

pytestmark = [
    pytest.mark.e2e,
    # a batch of duplicates only has no metric to publish, and powertools says so
    pytest.mark.filterwarnings("ignore:No application metrics to publish"),
]

SIZES = Config(
    burst=300,
    duplicates=20,
    copies=5,
    outage_events=3,
    outage_seconds=3.0,
    poison=30,
    poison_neighbours=30,
    cross_user=2,
    presence_webhooks=2,
    feedback_webhooks=2,
    broadcast=120,
    grace_seconds=1.0,
)
CHANNELS = {"email", "push", "sms", "realtime", "webhook"}


@pytest.fixture(scope="module")
def soak(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Soak]:
    """Module-scoped: stopped (threads joined, moto's in-process state reset) before other suites run."""
    with soak_stack(state_file=tmp_path_factory.mktemp("soak") / "stack.json") as stack:
        yield Soak(stack, SIZES)
        assert stack.moto
        stack.moto.reset()


def explain(result: ScenarioResult) -> dict[str, Any]:
    return {"problems": result.problems, **result.to_dict()}


def test_a_burst_over_all_five_channels_loses_nothing_and_sends_nothing_twice(soak: Soak) -> None:
    result = soak.burst(SIZES.burst)

    assert set(result.notes["by_channel"]) == CHANNELS
    assert result.expected > SIZES.burst  # critical notifications go to three channels at once
    assert (result.delivered, result.lost, result.doubled) == (result.expected, 0, 0), explain(result)
    assert result.dead_actual == 0 and result.ok, explain(result)


def test_a_role_broadcast_reaches_every_member_once_and_skips_the_muted_with_the_reason(soak: Soak) -> None:
    result = soak.broadcast(SIZES.broadcast)

    assert result.notes["eligible"] == SIZES.broadcast - SIZES.broadcast // 10
    assert (result.delivered, result.lost, result.doubled) == (result.notes["eligible"], 0, 0), explain(
        result
    )
    assert result.notes["skipped_with_reason"] == SIZES.broadcast // 10, explain(result)
    assert result.notes["push_batches"] > 0 and result.notes["aws_calls_per_person"]["RouterFunction"] > 0
    assert result.ok, explain(result)


def test_a_duplicate_storm_with_every_message_redelivered_sends_once_per_channel(soak: Soak) -> None:
    result = soak.duplicate_storm(SIZES.duplicates, SIZES.copies)

    assert result.events_put == SIZES.duplicates * SIZES.copies
    # every event put and every message the router queued for a sender came back once more
    assert result.notes["messages_redelivered"] >= result.events_put + result.expected
    assert (result.delivered, result.lost, result.doubled) == (result.expected, 0, 0), explain(result)
    assert result.ok, explain(result)


@pytest.mark.parametrize("provider", sorted(PROVIDER_CHANNEL))
def test_a_provider_outage_delays_but_never_loses_or_doubles(soak: Soak, provider: str) -> None:
    result = soak.outage(provider, SIZES.outage_events, SIZES.outage_seconds)

    # The provider refused requests (FCM's SDK retries a 503 itself, so Herald may see fewer).
    assert result.notes["requests_refused_by_the_provider"] >= 1, explain(result)
    assert result.notes[f"{PROVIDER_CHANNEL[provider]}_delivered_during_the_outage"] == 0
    assert (result.delivered, result.lost, result.doubled) == (result.expected, 0, 0), explain(result)
    assert result.dead_actual == 0 and result.ok, explain(result)


def test_malformed_events_are_dead_lettered_with_their_reason_and_their_neighbours_delivered(
    soak: Soak,
) -> None:
    result = soak.poison(SIZES.poison, SIZES.poison_neighbours)

    assert result.notes["malformed"] == SIZES.poison
    assert result.notes["mixed_batches"] > 0
    assert result.dead_actual == result.dead_expected == SIZES.poison, explain(result)
    assert result.notes["reasons_checked"] == SIZES.poison, explain(result)
    assert (result.delivered, result.lost, result.doubled) == (result.expected, 0, 0), explain(result)
    assert result.ok, explain(result)


def test_another_person_can_neither_read_nor_change_anyones_data_through_any_route(soak: Soak) -> None:
    result = soak.cross_user(SIZES.cross_user)

    assert result.notes["attempts"] >= SIZES.cross_user * 13 * 3  # every /v1/me route, three ways at least
    assert result.lost == 0 and result.ok, explain(result)


def test_forged_replayed_and_stale_pusher_webhooks_change_no_ones_presence(soak: Soak) -> None:
    result = soak.presence_webhooks(SIZES.presence_webhooks)

    assert result.notes["attempts"] == SIZES.presence_webhooks * 5
    assert result.lost == 0 and result.ok, explain(result)


def test_forged_replayed_and_stale_sendgrid_and_twilio_callbacks_change_nothing(soak: Soak) -> None:
    result = soak.feedback_webhooks(SIZES.feedback_webhooks)

    # 5 SendGrid and 6 Twilio attacks each, and an inbound START replayed after a later STOP
    assert result.notes["attempts"] == SIZES.feedback_webhooks * 12
    assert result.lost == 0 and result.ok, explain(result)
