"""The email channel: recipient, send-time checks, List-Unsubscribe, render, provider (with failover)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from herald.channels.context import DeliveryContext, Skip
from herald.channels.ports import EmailProvider, OutgoingEmail
from herald.channels.result import Accepted, RetryLater, SendResult, Uncertain
from herald.channels.transport import request_answered
from herald.delivery import DeliveryState
from herald.models import Category, Channel
from herald.rendering import Renderer
from herald.stores.keys import email_address
from herald.stores.suppression import SuppressionStore
from herald.unsubscribe import list_unsubscribe_headers, make_token, unsubscribe_url


class FailoverEmailProvider:
    """Send with `primary`; when it answers retry-later, try `secondary` at once.

    Only a retry-later that proves the primary did not take the message fails over: throttling,
    503, our credentials or account refused, or a request that provably never left (refused,
    connect timeout, DNS, TLS, credentials unreadable). A 500, 502 or 504 may come after the
    provider took the message: it is retried later on the same provider, never failed over. After an
    `Uncertain` result (a read timeout, a reset after the request was written) the primary may have it: no
    failover, the result stands (a second copy through another provider is as much a duplicate). A permanent
    failure from the primary is final too (the address or content is bad: another provider would not help).
    When the secondary does not accept either, the result stays retry-later with both reasons, so the message
    backs off and starts with the primary again; an uncertain secondary is uncertain."""

    def __init__(self, primary: EmailProvider, secondary: EmailProvider) -> None:
        self.primary = primary
        self.secondary = secondary
        self.name = primary.name

    def send(self, email: OutgoingEmail) -> SendResult:
        first = self.primary.send(email)
        if not isinstance(first, RetryLater) or not first.proves_not_accepted:
            return first
        request_answered()
        second = self.secondary.send(email)
        if isinstance(second, Accepted):
            detail = f"failed over from {first.provider} ({first.reason})"
            return Accepted(
                second.provider, second.provider_message_id, detail=detail, effects=second.effects
            )
        if isinstance(second, Uncertain):
            return Uncertain(
                second.provider,
                f"{second.reason} (failed over from {first.provider}: {first.reason})",
                code=second.code,
                effects=first.effects | second.effects,
            )
        return RetryLater(
            first.provider,
            f"{first.provider}: {first.reason}; failover {second.provider}: {second.reason}",
            retry_after=first.retry_after,
            code=first.code,
            effects=first.effects | second.effects,
        )


@dataclass(frozen=True)
class UnsubscribeLinks:
    """Signed one-click unsubscribe links (RFC 8058) for marketing mail."""

    api_base_url: str
    signing_key: Callable[[], str]  # read lazily from the UnsubscribeSigningSecret
    ttl_seconds: int
    mailto: str | None = None

    def for_recipient(self, user_id: str, category: Category, now: float) -> tuple[str, dict[str, str]]:
        token = make_token(self.signing_key(), user_id, category.value, ttl_seconds=self.ttl_seconds, now=now)
        url = unsubscribe_url(self.api_base_url, token)
        return url, list_unsubscribe_headers(url, self.mailto, token)


class EmailDeliverer:
    channel = Channel.EMAIL
    resend_stale_claims = False

    def __init__(
        self,
        provider: EmailProvider,
        renderer: Renderer,
        suppression: SuppressionStore,
        *,
        sender: str,
        unsubscribe: UnsubscribeLinks,
        reply_to: str | None = None,
    ) -> None:
        self.provider = provider
        self._renderer = renderer
        self._suppression = suppression
        self._sender = sender
        self._reply_to = reply_to
        self._unsubscribe = unsubscribe

    def deliver(self, context: DeliveryContext) -> SendResult | Skip:
        message = context.message
        to = message.to
        if not to:
            profile = context.profile()
            to = profile.email if profile else None
        if not to:
            return Skip(DeliveryState.NOT_DELIVERED, "the user has no email address", "no_address")
        if self._suppression.is_suppressed(email_address(to)):
            return Skip(
                DeliveryState.SUPPRESSED, "the address is suppressed (bounce or complaint)", "suppressed"
            )
        if message.stops_when_acknowledged:  # an escalation step (it may have waited)
            # an escalation step that waited (the step before it, quiet hours): the person may have
            # turned this channel off meanwhile
            profile = context.profile()
            if profile is not None and (
                why := profile.preferences.turned_off(Channel.EMAIL, message.category)
            ):
                return Skip(DeliveryState.SUPPRESSED, why, "email_disabled")
        extra = context.template_context
        headers: dict[str, str] = {}
        if message.category is Category.MARKETING:
            profile = context.profile()
            if profile is None or not profile.preferences.marketing_opt_in:
                return Skip(
                    DeliveryState.SUPPRESSED, "no marketing opt-in at send time", "no_marketing_opt_in"
                )
            if (
                Category.MARKETING in profile.preferences.muted_categories
                or message.type in profile.preferences.muted_types
                or profile.preferences.channel_muted_for(Category.MARKETING, Channel.EMAIL)
            ):
                return Skip(DeliveryState.SUPPRESSED, "marketing muted at send time", "muted")
            url, headers = self._unsubscribe.for_recipient(
                message.user_id, message.category, context.now.timestamp()
            )
            extra["unsubscribe_url"] = url
        rendered = self._renderer.render(message.type, Channel.EMAIL, message.locale, message.data, extra)
        email = OutgoingEmail(
            sender=self._sender,
            to=to,
            subject=rendered.subject or "",
            text=rendered.text or "",
            html=rendered.html,
            reply_to=self._reply_to,
            headers=headers,
            tags={
                "notification_id": message.notification_id,
                "user_id": message.user_id,
                "type": message.type,
            },
        )
        return self.provider.send(email)
