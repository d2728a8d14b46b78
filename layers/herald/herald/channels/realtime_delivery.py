"""The realtime channel: the in-app render stored on the inbox record, then a Pusher event.

The notification record already is the inbox item; the sender stores the in-app render on it
(`in_app`: title, body, locale) whatever happens next, so the inbox shows it even when the app
was not connected. The live event only goes to an occupied `private-user-<id>` channel, as the
occupancy Herald keeps from Pusher's webhooks says (the presence table, `herald.stores.presence`):
read for every record of an SQS batch in one consistent BatchGetItem (`deliver_batch`) just before
the batch's triggers, no provider call to ask. A vacant, expired or stale channel (no webhook
confirmed it within `PRESENCE_MAX_AGE_SECONDS`, the router's own bound) is not triggered: the
delivery is `not_delivered` (code `channel_vacant`) and counted as `RealtimeSkippedVacant`; for an
escalation primary that fails its task token, so the fallback goes at once. An occupied channel
costs exactly one Pusher request: the trigger.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from herald.channels.context import Crashed, DeliveryContext, Skip, deliver_alone
from herald.channels.ports import RealtimeEvent, RealtimeProvider
from herald.channels.result import CHANNEL_VACANT, SendResult
from herald.channels.sender import MetricsSink
from herald.channels.transport import provider_may_have_it, send_attempt
from herald.delivery import DeliveryState
from herald.models import Channel
from herald.rendering import Renderer
from herald.stores.dynamo import batch_get
from herald.stores.presence import Presence, presence_from_item, presence_key

EVENT_NAME = "notification"
SKIPPED_VACANT_METRIC = "RealtimeSkippedVacant"


def user_channel(user_id: str) -> str:
    return f"private-user-{user_id}"


class PresenceReader:
    """A person's occupancy as the presence table holds it (read-only; written by the webhook
    receiver). Strongly consistent: a webhook applied just before the send is seen."""

    def __init__(self, client: Any, table: str) -> None:
        self._client = client
        self._table = table

    def items(self, user_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
        """The presence items of those of `user_ids` ever occupied, by user id, in one batched
        read (parsed by the caller: one malformed item concerns its own message only)."""
        keys = [presence_key(user_id) for user_id in sorted(set(user_ids))]
        found = batch_get(self._client, {self._table: keys}, consistent=True)[self._table]
        return {str(item.get("user_id")): item for item in found}


class RealtimeDeliverer:
    channel = Channel.REALTIME
    resend_stale_claims = False

    def __init__(
        self,
        provider: RealtimeProvider,
        renderer: Renderer,
        presence: PresenceReader,
        *,
        presence_max_age_seconds: int,
        metrics: MetricsSink | None = None,
    ) -> None:
        self.provider = provider
        self._renderer = renderer
        self._presence = presence
        self._max_age = presence_max_age_seconds
        self._metrics = metrics

    def deliver(self, context: DeliveryContext) -> SendResult | Skip:
        return deliver_alone(self, context)

    def deliver_batch(self, contexts: Sequence[DeliveryContext]) -> list[SendResult | Skip | Crashed]:
        """One answer per context, in order: the batch's presence in one read, then each message on
        its own (an exception concerns its message alone)."""
        try:
            found = self._presence.items(c.message.user_id for c in contexts)
        except Exception as error:  # nothing was sent: each record is retried
            return [Crashed(error) for _ in contexts]
        answers: list[SendResult | Skip | Crashed] = []
        for context in contexts:
            with send_attempt():
                try:
                    item = found.get(context.message.user_id)
                    presence = presence_from_item(item) if item is not None else None
                    answers.append(self._deliver(context, presence))
                except Exception as error:
                    answers.append(Crashed(error, provider_may_have_it()))
        return answers

    def _deliver(self, context: DeliveryContext, presence: Presence | None) -> SendResult | Skip:
        message = context.message
        if message.stops_when_acknowledged:  # an escalation step (it may have waited)
            profile = context.profile()
            if profile is not None and (
                why := profile.preferences.turned_off(Channel.REALTIME, message.category)
            ):
                return Skip(DeliveryState.SUPPRESSED, why, "realtime_disabled")
        rendered = self._renderer.render(
            message.type, Channel.REALTIME, message.locale, message.data, context.template_context
        )
        in_app = {"title": rendered.title or "", "body": rendered.body or "", "locale": message.locale}
        context.record_attributes["in_app"] = in_app
        channel = user_channel(message.user_id)
        vacant = self._vacancy(presence, context)
        if vacant is not None:
            if self._metrics is not None:
                self._metrics.add_metric(name=SKIPPED_VACANT_METRIC, unit="Count", value=1)
            return Skip(DeliveryState.NOT_DELIVERED, f"{channel} {vacant}: not triggered", CHANNEL_VACANT)
        payload = {
            "notification_id": message.notification_id,
            "type": message.type,
            "category": message.category.value,
            "urgency": message.urgency.value,
            "title": in_app["title"],
            "body": in_app["body"],
        }
        return self.provider.publish(RealtimeEvent(channel=channel, event=EVENT_NAME, payload=payload))

    def _vacancy(self, presence: Presence | None, context: DeliveryContext) -> str | None:
        """Why the channel counts as vacant, or None when it is occupied."""
        if presence is None:
            return "has never been occupied"
        if presence.online_at(context.now, self._max_age):
            return None
        if not presence.occupied:
            return "is vacant"
        return f"was last seen occupied more than {self._max_age}s ago (stale)"
