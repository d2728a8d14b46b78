"""The push channel: live device tokens, lock-screen-safe render, one FCM message per token.

A batch of records is delivered together (`deliver_batch`, decision 026): each record's device
tokens are resolved on their own, the suppression entries of every token of every record are read
in one batched read, each record is rendered on its own, and then every message of the batch goes
to the provider in one concurrent send. Each record gets its own result (`combine` of its tokens'
results): one record's failure, exception or dead tokens never decide another's.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import reduce

from herald.catalog import Badge
from herald.channels.context import Crashed, DeliveryContext, Skip, deliver_alone
from herald.channels.ports import PushBatchItem, PushNotification, PushProvider
from herald.channels.result import (
    DEAD_TOKEN,
    NO_EFFECTS,
    Accepted,
    PermanentFailure,
    RetryLater,
    SendResult,
    Uncertain,
)
from herald.channels.transport import provider_may_have_it, send_attempt
from herald.delivery import DeliveryState
from herald.models import Channel, Urgency
from herald.rendering import Renderer
from herald.stores.keys import push_address
from herald.stores.suppression import SuppressionStore

URGENT = frozenset({Urgency.CRITICAL, Urgency.HIGH})

Answer = SendResult | Skip | Crashed


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
        return deliver_alone(self, context)

    def deliver_batch(self, contexts: Sequence[DeliveryContext]) -> list[Answer]:
        """One answer per context, in order (see the module docstring)."""
        answers: list[Answer | None] = [None] * len(contexts)
        tokens: dict[int, list[str]] = {}
        for index, context in enumerate(contexts):
            try:
                found = self._tokens(context)
            except Exception as error:  # e.g. the profile could not be read: nothing sent
                answers[index] = Crashed(error)
                continue
            if isinstance(found, Skip):
                answers[index] = found
            else:
                tokens[index] = found
        try:  # one batched read for the whole batch, before anything is sent
            suppressed = self._suppression.suppressed_now(
                push_address(t) for found in tokens.values() for t in found
            )
        except Exception as error:
            for index in tokens:
                answers[index] = Crashed(error)
            tokens = {}
        sending: list[tuple[int, PushBatchItem]] = []
        for index, found in tokens.items():
            live = [t for t in found if push_address(t) not in suppressed]
            if not live:
                answers[index] = Skip(
                    DeliveryState.NOT_DELIVERED, "every device token is suppressed (dead)", "no_live_tokens"
                )
                continue
            try:
                sending.append((index, (self._push(contexts[index]), live)))
            except Exception as error:  # a render error: this record only
                answers[index] = Crashed(error)
        if sending:
            sent = self._send([item for _, item in sending])
            for (index, _), answer in zip(sending, sent, strict=True):
                answers[index] = answer
        return [answer if answer is not None else Crashed(RuntimeError("no answer")) for answer in answers]

    def _send(self, items: list[PushBatchItem]) -> list[SendResult | Crashed]:
        """Every message of the batch in one concurrent send; each push's tokens combined."""
        with send_attempt():
            try:
                per_push = self.provider.send_batch(items)
            except Exception as error:  # every push of the call shares it
                crashed = Crashed(error, provider_may_have_it())
                return [crashed for _ in items]
        return [
            combine(self.provider.name, tokens, results)
            for (_, tokens), results in zip(items, per_push, strict=True)
        ]

    @staticmethod
    def _tokens(context: DeliveryContext) -> list[str] | Skip:
        message = context.message
        tokens = list(dict.fromkeys(message.device_tokens))
        if message.stops_when_acknowledged:  # an escalation step (it may have waited)
            # an escalation step may have waited (quiet hours, the step before): re-check the choice
            profile = context.profile()
            if profile is not None:
                if why := profile.preferences.turned_off(Channel.PUSH, message.category):
                    return Skip(DeliveryState.SUPPRESSED, why, "push_disabled")
                tokens = [t for t in tokens if t in profile.devices]
        if not tokens:
            return Skip(DeliveryState.NOT_DELIVERED, "no device token", "no_device")
        return tokens

    def _push(self, context: DeliveryContext) -> PushNotification:
        message, presentation = context.message, context.entry.push
        rendered = self._renderer.render(
            message.type, Channel.PUSH, message.locale, message.data, context.template_context
        )
        urgent = message.urgency in URGENT
        data = {
            "notification_id": message.notification_id,
            "type": message.type,
            "category": message.category.value,
            "urgency": message.urgency.value,
        }
        if presentation.badge is Badge.INCREMENT:
            data["badge"] = presentation.badge.value  # for the app's extension (iOS badges are absolute)
        if presentation.data_only:
            # the app renders it: the lock-screen-safe render, and the channel it would have used
            data |= {
                "title": rendered.title or "",
                "body": rendered.body or "",
                "android_channel": context.entry.android_channel,
            }
        return PushNotification(
            title=rendered.title or "",
            body=rendered.body or "",
            data=data,
            android_channel=context.entry.android_channel,
            android_priority="high" if urgent else "normal",
            apns_priority=10 if urgent else 5,
            collapse_key=presentation.collapse_key_for(message.data, message.notification_id),
            collapsible=presentation.collapse_key is not None,
            sound=presentation.sound,
            badge=presentation.badge.value,
            interruption_level=presentation.interruption_level.value,
            apns_category=presentation.apns_category,
            ttl_seconds=presentation.ttl_seconds,
            data_only=presentation.data_only,
        )
