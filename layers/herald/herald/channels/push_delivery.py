"""The push channel: live device tokens, lock-screen-safe render, one FCM message per token."""

from __future__ import annotations

from collections.abc import Sequence
from functools import reduce

from herald.channels.context import DeliveryContext, Skip
from herald.channels.ports import PushNotification, PushProvider
from herald.channels.result import (
    DEAD_TOKEN,
    NO_EFFECTS,
    Accepted,
    PermanentFailure,
    RetryLater,
    SendResult,
    Uncertain,
)
from herald.delivery import DeliveryState
from herald.models import Channel, Urgency
from herald.rendering import Renderer
from herald.stores.keys import push_address
from herald.stores.suppression import SuppressionStore

URGENT = frozenset({Urgency.CRITICAL, Urgency.HIGH})


def combine(provider: str, tokens: Sequence[str], results: Sequence[SendResult]) -> SendResult:
    """One result for the notification from one result per device token.

    The channel has one state per notification, so the first of these that applies decides:

    1. any device accepted it → sent (the other devices' failures are not retried: resending
       would duplicate it on the devices that have it); the detail counts the uncertain ones;
    2. none accepted, but one may have it (`Uncertain`) → uncertain: resending to the others
       could still reach that one twice, so nothing is resent;
    3. a transient failure on a device whose request provably never left → retry later;
    4. otherwise failed, as `DEAD_TOKEN` when every token was dead.

    Effects (dead tokens) are kept whatever the outcome.
    """
    effects = reduce(lambda a, b: a | b, (r.effects for r in results), NO_EFFECTS)
    accepted = [r for r in results if isinstance(r, Accepted)]
    uncertain = [r for r in results if isinstance(r, Uncertain)]
    retry = [r for r in results if isinstance(r, RetryLater)]
    permanent = [r for r in results if isinstance(r, PermanentFailure)]
    summary = (
        f"{len(accepted)} of {len(tokens)} device(s) accepted"
        + (f", {len(uncertain)} uncertain" if uncertain else "")
        + (f", {len(effects.dead_tokens)} dead" if effects.dead_tokens else "")
        + (f", {len(retry)} transient failure(s)" if retry else "")
    )
    if accepted:
        ids = ",".join(r.provider_message_id or "?" for r in accepted)
        return Accepted(
            provider, accepted[0].provider_message_id, detail=f"{summary} ({ids})", effects=effects
        )
    if uncertain:
        return Uncertain(
            provider, f"{uncertain[0].reason} [{summary}]", code=uncertain[0].code, effects=effects
        )
    if retry:
        waits = [r.retry_after for r in retry if r.retry_after is not None]
        return RetryLater(
            provider,
            f"{retry[0].reason} [{summary}]",
            retry_after=max(waits) if waits else None,
            code=retry[0].code,
            effects=effects,
        )
    if permanent and all(r.code == DEAD_TOKEN for r in permanent):
        return PermanentFailure(
            provider, f"every device token is dead [{summary}]", code=DEAD_TOKEN, effects=effects
        )
    first = next((r for r in permanent if r.code != DEAD_TOKEN), None)
    if first is None:
        return PermanentFailure(provider, "no result from the provider", code="empty", effects=effects)
    return PermanentFailure(provider, f"{first.reason} [{summary}]", code=first.code, effects=effects)


class PushDeliverer:
    channel = Channel.PUSH
    resend_stale_claims = False

    def __init__(self, provider: PushProvider, renderer: Renderer, suppression: SuppressionStore) -> None:
        self.provider = provider
        self._renderer = renderer
        self._suppression = suppression

    def deliver(self, context: DeliveryContext) -> SendResult | Skip:
        message = context.message
        tokens = list(dict.fromkeys(message.device_tokens))
        if message.task_token:
            # an escalation primary may have waited out quiet hours: re-check the user's choice
            profile = context.profile()
            if profile is not None:
                if not profile.preferences.channel_enabled(Channel.PUSH):
                    return Skip(DeliveryState.SUPPRESSED, "push disabled by the user", "push_disabled")
                tokens = [t for t in tokens if t in profile.devices]
        if not tokens:
            return Skip(DeliveryState.NOT_DELIVERED, "no device token", "no_device")
        live = [t for t in tokens if not self._suppression.is_suppressed(push_address(t))]
        if not live:
            return Skip(
                DeliveryState.NOT_DELIVERED, "every device token is suppressed (dead)", "no_live_tokens"
            )
        rendered = self._renderer.render(
            message.type, Channel.PUSH, message.locale, message.data, context.template_context
        )
        urgent = message.urgency in URGENT
        push = PushNotification(
            title=rendered.title or "",
            body=rendered.body or "",
            data={
                "notification_id": message.notification_id,
                "type": message.type,
                "category": message.category.value,
                "urgency": message.urgency.value,
            },
            android_channel=context.entry.android_channel,
            android_priority="high" if urgent else "normal",
            apns_priority=10 if urgent else 5,
            collapse_key=message.notification_id,
        )
        return combine(self.provider.name, live, self.provider.send(push, live))
