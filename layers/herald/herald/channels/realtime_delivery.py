"""The realtime channel: the in-app render stored on the inbox record, then a Pusher event.

The notification record already is the inbox item; the sender stores the in-app render on it
(`in_app`: title, body, locale) whatever happens next, so the inbox shows it even when the app
was not connected. The live event only goes to an occupied `private-user-<id>` channel.
"""

from __future__ import annotations

from herald.channels.context import DeliveryContext, Renderer, Skip
from herald.channels.ports import RealtimeEvent, RealtimeProvider
from herald.channels.result import SendResult
from herald.models import Channel

EVENT_NAME = "notification"


def user_channel(user_id: str) -> str:
    return f"private-user-{user_id}"


class RealtimeDeliverer:
    channel = Channel.REALTIME
    resend_stale_claims = False

    def __init__(self, provider: RealtimeProvider, renderer: Renderer) -> None:
        self.provider = provider
        self._renderer = renderer

    def deliver(self, context: DeliveryContext) -> SendResult | Skip:
        message = context.message
        rendered = self._renderer.render(
            message.type, Channel.REALTIME, message.locale, message.data, context.template_context
        )
        in_app = {"title": rendered.title or "", "body": rendered.body or "", "locale": message.locale}
        context.record_attributes["in_app"] = in_app
        payload = {
            "notification_id": message.notification_id,
            "type": message.type,
            "category": message.category.value,
            "urgency": message.urgency.value,
            "title": in_app["title"],
            "body": in_app["body"],
        }
        event = RealtimeEvent(channel=user_channel(message.user_id), event=EVENT_NAME, payload=payload)
        return self.provider.publish(event, only_if_occupied=True)
