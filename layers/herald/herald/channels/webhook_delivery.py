"""The webhook channel: the subscriber's endpoint and secret, the JSON body, a signed POST.

Body: `{"id": notification id, "event_id", "type", "sent_at", "data": <rendered payload>}`
(compact JSON, UTF-8). The same notification may arrive more than once (a stale claim is resent
here, see `herald.delivery`): receivers deduplicate on `Idempotency-Key` (= `id`).
"""

from __future__ import annotations

import json
from typing import Any

from herald.channels.context import DeliveryContext, Skip
from herald.channels.credentials import ProviderUnavailable, SecretSource
from herald.channels.ports import WebhookDelivery, WebhookTransport
from herald.channels.result import CREDENTIALS_UNAVAILABLE, RetryLater, SendResult
from herald.delivery import DeliveryState
from herald.models import Channel
from herald.rendering import Renderer


def secret_id(prefix: str, secret_name: str) -> str:
    """Subscribers' secrets live under `WEBHOOK_SECRET_PREFIX` (the only ones the sender may read)."""
    if secret_name.startswith(("arn:", prefix)):
        return secret_name
    return prefix + secret_name


def signing_secret(value: str) -> str:
    """The secret's value: the key itself, or JSON `{"secret": "..."}`."""
    stripped = value.strip()
    if stripped.startswith("{"):
        try:
            parsed: Any = json.loads(stripped)
        except json.JSONDecodeError:
            return stripped
        found = (parsed.get("secret") or parsed.get("signing_secret")) if isinstance(parsed, dict) else None
        if found:
            return str(found)
    return stripped


class WebhookDeliverer:
    channel = Channel.WEBHOOK
    resend_stale_claims = True

    def __init__(
        self, transport: WebhookTransport, renderer: Renderer, secrets: SecretSource, *, secret_prefix: str
    ) -> None:
        self.transport = transport
        self._renderer = renderer
        self._secrets = secrets
        self._prefix = secret_prefix

    def deliver(self, context: DeliveryContext) -> SendResult | Skip:
        message = context.message
        profile = context.profile()
        endpoint = profile.webhook if profile else None
        if endpoint is None:
            return Skip(DeliveryState.NOT_DELIVERED, "the subscriber has no webhook endpoint", "no_endpoint")
        url = message.to or endpoint.url
        try:
            secret = signing_secret(self._secrets.text(secret_id(self._prefix, endpoint.secret_name)))
        except ProviderUnavailable as error:
            return RetryLater(self.transport.name, str(error), code=CREDENTIALS_UNAVAILABLE)
        rendered = self._renderer.render(
            message.type, Channel.WEBHOOK, message.locale, message.data, context.template_context
        )
        body = {
            "id": message.notification_id,
            "event_id": message.event_id,
            "type": message.type,
            "sent_at": context.now.isoformat(),
            "data": rendered.payload or {},
        }
        raw = json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        return self.transport.post(
            WebhookDelivery(
                url=url,
                body=raw,
                secret=secret,
                idempotency_key=message.notification_id,
                event_type=message.type,
            )
        )
