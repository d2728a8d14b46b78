"""The outage budget as the template wires it (decision 010): the parameters' bounds are the ones
the sizing assumes, every sender gets them, and the channel queues' maxReceiveCount is sized from
the tolerance and equals the MAX_RECEIVE_COUNT the senders renew by."""

from __future__ import annotations

from typing import Any

import pytest

from herald.channels.outage import (
    RETRY_BASE_RANGE_SECONDS,
    TOLERANCE_RANGE_SECONDS,
    max_receive_count_for,
    template_max_receive_count,
)
from herald.channels.settings import SenderSettings
from tests.infra.helpers import props, resources_of, target_id

pytestmark = pytest.mark.infra

CHANNEL_QUEUES = {
    "EmailSenderFunction": "EmailQueue",
    "PushSenderFunction": "PushQueue",
    "SmsSenderFunction": "SmsQueue",
    "RealtimeSenderFunction": "RealtimeQueue",
    "WebhookSenderFunction": "WebhookQueue",
}


def parameter(template: dict[str, Any], name: str) -> dict[str, Any]:
    return template["Parameters"][name]


def test_the_parameters_bounds_are_the_ones_the_sizing_assumes(template: dict[str, Any]) -> None:
    tolerance = parameter(template, "ProviderOutageToleranceSeconds")
    base = parameter(template, "ProviderRetryBaseSeconds")
    assert (tolerance["Type"], tolerance["Default"]) == ("Number", 3600)
    assert (tolerance["MinValue"], tolerance["MaxValue"]) == TOLERANCE_RANGE_SECONDS
    assert (base["Type"], base["Default"]) == ("Number", 20)
    assert (base["MinValue"], base["MaxValue"]) == RETRY_BASE_RANGE_SECONDS


@pytest.mark.parametrize("function_id", sorted(CHANNEL_QUEUES))
def test_every_sender_gets_the_budget_and_its_queues_receive_count(
    translated: dict[str, Any], function_id: str
) -> None:
    variables = props(translated["Resources"][function_id])["Environment"]["Variables"]
    assert variables["PROVIDER_OUTAGE_TOLERANCE_SECONDS"] == {"Ref": "ProviderOutageToleranceSeconds"}
    assert variables["RETRY_BASE_SECONDS"] == {"Ref": "ProviderRetryBaseSeconds"}
    queue = props(translated["Resources"][CHANNEL_QUEUES[function_id]])
    assert int(variables["MAX_RECEIVE_COUNT"]) == queue["RedrivePolicy"]["maxReceiveCount"]
    assert "RETRY_MAX_SECONDS" not in variables  # the backoff may grow to the SQS maximum


def test_the_channel_queues_receive_count_is_sized_from_the_tolerance(template: dict[str, Any]) -> None:
    tolerance = parameter(template, "ProviderOutageToleranceSeconds")
    base = parameter(template, "ProviderRetryBaseSeconds")
    queues = resources_of(template, "AWS::SQS::Queue")
    counts = {
        queue_id: props(queues[queue_id])["RedrivePolicy"]["maxReceiveCount"]
        for queue_id in CHANNEL_QUEUES.values()
    }
    assert set(counts.values()) == {template_max_receive_count()}, counts
    assert all(target_id(props(queues[q])["RedrivePolicy"]["deadLetterTargetArn"]) for q in counts)
    count = template_max_receive_count()
    for seconds in (tolerance["MinValue"], tolerance["Default"], tolerance["MaxValue"]):
        for base_seconds in (base["MinValue"], base["Default"], base["MaxValue"]):
            assert max_receive_count_for(seconds, base_seconds) <= count, (seconds, base_seconds)
    assert max_receive_count_for(tolerance["MaxValue"], base["MinValue"]) == count
    # a sender that is not told the count assumes the template's
    assert SenderSettings.model_fields["max_receive_count"].get_default(call_default_factory=True) == count
