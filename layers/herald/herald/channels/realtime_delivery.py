"""The realtime channel: the in-app render stored on the inbox record, then a Pusher event.

The notification record already is the inbox item; the sender stores the in-app render on it
(`in_app`: title, body, locale) whatever happens next, so the inbox shows it even when the app
was not connected. The live event only goes to an occupied `private-user-<id>` channel, as the
occupancy Herald keeps from Pusher's webhooks says (the presence table, `herald.stores.presence`):
one consistent GetItem, no provider call to ask. A vacant, expired or stale channel (no webhook
confirmed it within `PRESENCE_MAX_AGE_SECONDS`, the router's own bound) is not triggered: the
delivery is `not_delivered` (code `channel_vacant`) and counted as `RealtimeSkippedVacant`; for an
escalation primary that fails its task token, so the fallback goes at once. An occupied channel
costs exactly one Pusher request: the trigger.
"""

from __future__ import annotations

from typing import Any

from herald.channels.context import DeliveryContext, Skip
from herald.channels.ports import RealtimeEvent, RealtimeProvider
from herald.channels.result import CHANNEL_VACANT, SendResult
from herald.channels.sender import MetricsSink
from herald.delivery import DeliveryState
from herald.models import Channel
from herald.rendering import Renderer
from herald.stores.dynamo import from_attributes, to_attributes
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

    def get(self, user_id: str) -> Presence | None:
        item = self._client.get_item(
            TableName=self._table, Key=to_attributes(presence_key(user_id)), ConsistentRead=True
        ).get("Item")
        return presence_from_item(from_attributes(item)) if item else None


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
        vacant = self._vacancy(message.user_id, context)
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

    def _vacancy(self, user_id: str, context: DeliveryContext) -> str | None:
        """Why the channel counts as vacant, or None when it is occupied."""
        presence = self._presence.get(user_id)
        if presence is None:
            return "has never been occupied"
        if presence.online_at(context.now, self._max_age):
            return None
        if not presence.occupied:
            return "is vacant"
        return f"was last seen occupied more than {self._max_age}s ago (stale)"
