"""Each sender function imports only its own provider SDK (cold start, package size): checked in
a fresh interpreter per function, with the environment the template gives it."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.support.aws import REPO_ROOT

pytestmark = pytest.mark.unit

PROVIDER_SDKS = ("firebase_admin", "twilio", "sendgrid", "pusher")
OWN_SDK = {
    "email_sender": "sendgrid",
    "push_sender": "firebase_admin",
    "sms_sender": "twilio",
    "realtime_sender": "pusher",
    "webhook_sender": None,
    "router": None,
}
QUEUES = ("INGEST", "BROADCAST", "EMAIL", "PUSH", "SMS", "REALTIME", "WEBHOOK")
ENV = {
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "POWERTOOLS_TRACE_DISABLED": "true",
    "POWERTOOLS_SERVICE_NAME": "herald",
    "POWERTOOLS_METRICS_NAMESPACE": "Herald",
    "STAGE": "dev",
    "USERS_TABLE": "users",
    "PRESENCE_TABLE": "presence",
    "SUPPRESSION_TABLE": "suppression",
    "NOTIFICATIONS_TABLE": "notifications",
    "RATE_COUNTERS_TABLE": "rate",
    "IDEMPOTENCY_TABLE": "idempotency",
    **{f"{q}_QUEUE_URL": f"https://sqs.us-east-1.amazonaws.com/1/{q}" for q in QUEUES},
    **{f"{q}_QUEUE_ARN": f"arn:aws:sqs:us-east-1:1:{q}" for q in QUEUES},
    **{f"{q}_DLQ_URL": f"https://sqs.us-east-1.amazonaws.com/1/{q}-dlq" for q in QUEUES},
    "ESCALATION_STATE_MACHINE_ARN": "arn:aws:states:us-east-1:1:stateMachine:escalation",
    "SCHEDULER_ROLE_ARN": "arn:aws:iam::1:role/scheduler",
    "SCHEDULE_GROUP": "herald-dev",
    "RATE_LIMITS": json.dumps({"email": 20}),
    "EMAIL_PROVIDER": "ses",
    "EMAIL_FAILOVER": "true",
    "EMAIL_FROM": "notifications@example.com",
    "EMAIL_REPLY_TO": "",
    "SES_CONFIGURATION_SET": "herald-dev",
    "SENDGRID_SECRET_ARN": "arn:aws:secretsmanager:us-east-1:1:secret:herald/dev/sendgrid",
    "UNSUBSCRIBE_SECRET_ARN": "arn:aws:secretsmanager:us-east-1:1:secret:herald/dev/unsubscribe",
    "API_BASE_URL": "https://api.example.com",
    "FCM_SECRET_ARN": "arn:aws:secretsmanager:us-east-1:1:secret:herald/dev/fcm",
    "TWILIO_SECRET_ARN": "arn:aws:secretsmanager:us-east-1:1:secret:herald/dev/twilio",
    "TWILIO_STATUS_CALLBACK_URL": "https://api.example.com/v1/webhooks/twilio",
    "PUSHER_SECRET_ARN": "arn:aws:secretsmanager:us-east-1:1:secret:herald/dev/pusher",
    "WEBHOOK_SECRET_PREFIX": "herald/dev/webhooks/",
}
PYTHONPATH = os.pathsep.join([str(REPO_ROOT), str(REPO_ROOT / "layers" / "herald")])
PROBE = """
import json, sys
import functions.{name}.app
print(json.dumps(sorted(m for m in {sdks!r} if m in sys.modules)))
"""


@pytest.mark.parametrize("name", sorted(OWN_SDK))
def test_a_function_imports_no_other_providers_sdk(name: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "POWERTOOLS_"))}
    env.update(ENV)
    env["PYTHONPATH"] = PYTHONPATH
    done = subprocess.run(
        [sys.executable, "-c", PROBE.format(name=name, sdks=PROVIDER_SDKS)],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    loaded = json.loads(done.stdout.strip().splitlines()[-1])
    own = OWN_SDK[name]
    # its own SDK or none: the email sender imports SendGrid's on first use (decision 031)
    assert set(loaded) <= ({own} if own else set()), f"{name} imported {loaded}"


SHARED_MODULES = (
    "herald.channels",
    "herald.channels.sender",
    "herald.channels.wiring",
    "herald.channels.email_delivery",
    "herald.channels.push_delivery",
    "herald.channels.sms_delivery",
    "herald.channels.realtime_delivery",
    "herald.channels.webhook_delivery",
    "herald.channels.webhook_http",
    "herald.channels.ses",
    "herald.delivery",
)


def test_the_channels_package_and_its_shared_modules_import_no_provider_sdk() -> None:
    probe = "import importlib, json, sys\n"
    probe += "".join(f"importlib.import_module({name!r})\n" for name in SHARED_MODULES)
    probe += f"print(json.dumps(sorted(m for m in {PROVIDER_SDKS!r} if m in sys.modules)))\n"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), str(REPO_ROOT / "layers" / "herald")]),
    }
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []
