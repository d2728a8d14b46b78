"""Channel delivery: one port per channel, one adapter module per provider, one shared pipeline.

- `result`: the single result type every adapter returns (accepted / permanent / retry later /
  uncertain);
- `transport`: which transport errors prove a request never left (retry) and which may have
  reached the provider (uncertain: never resent), and the adapters' point of no return;
- `ports`: the Protocols (`EmailProvider`, `PushProvider`, `SmsProvider`, `RealtimeProvider`,
  `WebhookTransport`) and the messages they take;
- adapters, each importing its provider's SDK and nothing else's: `ses` (boto3), `sendgrid_email`,
  `fcm` (firebase-admin), `twilio_sms`, `pusher_realtime`, `webhook_http` (urllib);
- `*_delivery`: each channel's send step (recipient, send-time checks, render, port call);
- `sender`: the pipeline (claim, deliver, effects, outcome, SQS backoff, escalation);
- `settings`, `credentials`, `lazy`, `wiring`: configuration and cold-start wiring.

This package imports no provider SDK: a function imports the one adapter it uses, so its cold
start pays only for that SDK.
"""

from herald.channels.result import Accepted, Effects, PermanentFailure, RetryLater, SendResult, Uncertain

__all__ = ["Accepted", "Effects", "PermanentFailure", "RetryLater", "SendResult", "Uncertain"]
