"""Loopback sandboxes that speak Pusher's, FCM's (+ Google OAuth's), Twilio's and SendGrid's HTTP
APIs, verify credentials and signatures as they do, keep an outbox and can be told to fail.

    host = SandboxHost(port=0).start()
    host.credentials.secrets()        # Herald's Secrets Manager values, aimed at the host
    host.outbox.wait_for(provider="twilio")
    host.faults.add("twilio", status=503, count=2)
    host.stop()
"""

from local.sandboxes.credentials import (
    FcmCredentials,
    JwtIssuerCredentials,
    PusherCredentials,
    SandboxCredentials,
    SendGridCredentials,
    TwilioCredentials,
)
from local.sandboxes.faults import FaultDecision, FaultRule, Faults
from local.sandboxes.fcm import FcmSandbox, OAuthSandbox, google_auth_on_loopback
from local.sandboxes.host import DEFAULT_PORT, SandboxHost
from local.sandboxes.issuer import JwtIssuer
from local.sandboxes.outbox import Outbox, OutboxEntry
from local.sandboxes.pusher_channels import PusherSandbox
from local.sandboxes.receivers import WebhookReceivers, herald_signature
from local.sandboxes.sendgrid_mail import SendGridSandbox
from local.sandboxes.twilio_messaging import SentMessage, TwilioSandbox
from local.sandboxes.web import WebhookDelivery

__all__ = [
    "DEFAULT_PORT",
    "FaultDecision",
    "FaultRule",
    "Faults",
    "FcmCredentials",
    "FcmSandbox",
    "JwtIssuer",
    "JwtIssuerCredentials",
    "OAuthSandbox",
    "Outbox",
    "OutboxEntry",
    "PusherCredentials",
    "PusherSandbox",
    "SandboxCredentials",
    "SandboxHost",
    "SendGridCredentials",
    "SendGridSandbox",
    "SentMessage",
    "TwilioCredentials",
    "TwilioSandbox",
    "WebhookDelivery",
    "WebhookReceivers",
    "google_auth_on_loopback",
    "herald_signature",
]
