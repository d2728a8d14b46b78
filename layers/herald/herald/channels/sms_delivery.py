"""The SMS channel: phone, suppression (STOP), marketing consent for that number at send time, render,
Twilio."""

from __future__ import annotations

from herald.channels.context import DeliveryContext, Skip
from herald.channels.ports import OutgoingSms, SmsProvider
from herald.channels.result import SendResult
from herald.delivery import DeliveryState
from herald.models import Category, Channel
from herald.rendering import Renderer
from herald.stores.keys import sms_address
from herald.stores.suppression import SuppressionStore
from herald.twilio_feedback import status_callback_url


class SmsDeliverer:
    channel = Channel.SMS
    resend_stale_claims = False

    def __init__(
        self,
        provider: SmsProvider,
        renderer: Renderer,
        suppression: SuppressionStore,
        *,
        status_callback_url: str | None = None,
    ) -> None:
        self.provider = provider
        self._renderer = renderer
        self._suppression = suppression
        self._status_callback_url = status_callback_url

    def deliver(self, context: DeliveryContext) -> SendResult | Skip:
        message = context.message
        to = message.to
        if not to:
            profile = context.profile()
            to = profile.phone if profile else None
        if not to:
            return Skip(DeliveryState.NOT_DELIVERED, "the user has no phone number", "no_address")
        if self._suppression.is_suppressed(sms_address(to)):
            return Skip(DeliveryState.SUPPRESSED, "the phone opted out of SMS (STOP)", "suppressed")
        if message.stops_when_acknowledged:  # an escalation step (it may have waited)
            # an escalation step that waited (the step before it, quiet hours): the person may have
            # turned this channel off meanwhile
            profile = context.profile()
            if profile is not None and (why := profile.preferences.turned_off(Channel.SMS, message.category)):
                return Skip(DeliveryState.SUPPRESSED, why, "sms_disabled")
        if message.category is Category.MARKETING:
            # TCPA: marketing SMS only with a consent on record now, not just at routing time, and
            # for the number texted (a consent covers one number: not a phone the person has since)
            profile = context.profile()
            consent = profile.sms_marketing_consent if profile else None
            if profile is None or consent is None:
                return Skip(DeliveryState.SUPPRESSED, "no recorded SMS marketing consent", "no_consent")
            if not consent.covers(to, profile.phone):
                return Skip(
                    DeliveryState.SUPPRESSED,
                    "the recorded SMS marketing consent is for another phone number",
                    "no_consent_for_number",
                )
            if not profile.preferences.marketing_opt_in:
                return Skip(
                    DeliveryState.SUPPRESSED, "no marketing opt-in at send time", "no_marketing_opt_in"
                )
            preferences = profile.preferences
            if (
                Category.MARKETING in preferences.muted_categories
                or message.type in preferences.muted_types
                or preferences.channel_muted_for(Category.MARKETING, Channel.SMS)
            ):
                return Skip(DeliveryState.SUPPRESSED, "marketing SMS muted at send time", "muted")
        rendered = self._renderer.render(
            message.type, Channel.SMS, message.locale, message.data, context.template_context
        )
        callback = self._status_callback_url
        if callback:  # Twilio echoes (and signs) the ids: its callback finds the notification (023)
            callback = status_callback_url(callback, message.user_id, message.notification_id)
        return self.provider.send(OutgoingSms(to=to, body=rendered.sms or "", status_callback=callback))
