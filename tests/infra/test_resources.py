"""Queues, alarms, tables, functions, rules and outputs against docs/contracts.md and the
operational rules (6 x visibility, DLQs with alarms, PITR, on demand)."""

from __future__ import annotations

import re
import tomllib
from typing import Any

import pytest

from herald.channels.outage import template_max_receive_count
from tests.infra.conftest import REPO_ROOT, SAMCONFIG_PATH
from tests.infra.helpers import as_list, props, resources_of, target_id, walk

pytestmark = pytest.mark.infra

DLQ_RETENTION = 14 * 24 * 3600
FUTURE_CONSUMER_TIMEOUTS: dict[str, int] = {}  # queues whose consumer is not in the template yet
CHANNEL_QUEUES = {"EmailQueue", "PushQueue", "SmsQueue", "RealtimeQueue", "WebhookQueue"}

FUNCTIONS = {  # docs/contracts.md, Functions
    "RouterFunction": ("functions/router/", ["IngestQueue", "BroadcastQueue"]),
    "DirectoryFunction": ("functions/directory/", "DirectoryQueue"),
    "FeedbackFunction": ("functions/feedback/", "FeedbackQueue"),
    "EmailSenderFunction": ("functions/email_sender/", "EmailQueue"),
    "PushSenderFunction": ("functions/push_sender/", "PushQueue"),
    "SmsSenderFunction": ("functions/sms_sender/", "SmsQueue"),
    "RealtimeSenderFunction": ("functions/realtime_sender/", "RealtimeQueue"),
    "WebhookSenderFunction": ("functions/webhook_sender/", "WebhookQueue"),
}

PROVIDER_SDKS = {  # requirement name -> the only function folder that may list it
    "sendgrid": "email_sender",
    "firebase-admin": "push_sender",
    "twilio": "sms_sender",
    "pusher": "realtime_sender",
}
# Functions that use a provider SDK's own signature helpers (never its requests) for inbound calls:
# the API checks Pusher's webhook signatures and signs channel auth with the pusher SDK.
# Functions that may list another function's provider SDK for its own helpers only (signature
# checks of the providers' webhooks, Pusher channel auth), at the same pin.
SDK_HELPERS = {"pusher": {"api"}, "sendgrid": {"api"}, "twilio": {"twilio_webhook"}}

TABLES = {  # docs/contracts.md, Tables: keys, indexes (name -> (keys, projection)), TTL attribute
    "UsersTable": {
        "keys": [("pk", "HASH"), ("sk", "RANGE")],
        "gsi": {
            "ByRole": ([("role", "HASH"), ("user_id", "RANGE")], "KEYS_ONLY"),
            "ByTopic": ([("topic", "HASH"), ("user_id", "RANGE")], "INCLUDE"),
        },
        "lsi": {},
        "ttl": "expires_at",
        "retain": True,
    },
    "PresenceTable": {
        "keys": [("user_id", "HASH")],
        "gsi": {},
        "lsi": {},
        "ttl": "expires_at",
        "retain": False,
    },
    "SuppressionTable": {
        "keys": [("address", "HASH")],
        "gsi": {},
        "lsi": {},
        "ttl": "expires_at",
        "retain": True,
    },
    "NotificationsTable": {
        "keys": [("user_id", "HASH"), ("notification_id", "RANGE")],
        "gsi": {
            "DigestPending": ([("digest_day", "HASH"), ("digest_due_at", "RANGE")], "INCLUDE"),
            "Unread": ([("user_id", "HASH"), ("unread_at", "RANGE")], None),
            "ByNotification": ([("notification_id", "HASH")], None),
        },
        "lsi": {"ByCreated": ([("user_id", "HASH"), ("created_at", "RANGE")], None)},
        "ttl": "expires_at",
        "retain": True,
    },
    "RateCountersTable": {
        "keys": [("pk", "HASH")],
        "gsi": {},
        "lsi": {},
        "ttl": "expires_at",
        "retain": False,
    },
    "IdempotencyTable": {
        "keys": [("id", "HASH")],
        "gsi": {},
        "lsi": {},
        "ttl": "expiration",
        "retain": False,
    },
}

COMMON_ENV = {
    "STAGE",
    "LOG_LEVEL",
    "POWERTOOLS_SERVICE_NAME",
    "POWERTOOLS_METRICS_NAMESPACE",
    "USERS_TABLE",
    "PRESENCE_TABLE",
    "SUPPRESSION_TABLE",
    "NOTIFICATIONS_TABLE",
    "RATE_COUNTERS_TABLE",
    "IDEMPOTENCY_TABLE",
    "INGEST_QUEUE_URL",
    "EMAIL_QUEUE_URL",
    "PUSH_QUEUE_URL",
    "SMS_QUEUE_URL",
    "REALTIME_QUEUE_URL",
    "WEBHOOK_QUEUE_URL",
    "NOTIFICATION_RETENTION_DAYS",
    "TEMPLATE_BUCKET",
    "TEMPLATE_PREFIX",
}
FUNCTION_ENV = {
    "RouterFunction": {
        "ESCALATION_STATE_MACHINE_ARN",
        "SCHEDULER_ROLE_ARN",
        "SCHEDULE_GROUP",
        "INGEST_QUEUE_ARN",
        "EMAIL_QUEUE_ARN",
        "PUSH_QUEUE_ARN",
        "SMS_QUEUE_ARN",
        "REALTIME_QUEUE_ARN",
        "WEBHOOK_QUEUE_ARN",
        "RATE_LIMITS",
        "FALLBACK_DELAY_SECONDS",
        "DIGEST_DELAY_SECONDS",
        "PRESENCE_MAX_AGE_SECONDS",
        "INGEST_DLQ_URL",
    },
    "EmailSenderFunction": {
        "EMAIL_PROVIDER",
        "EMAIL_FAILOVER",
        "EMAIL_FROM",
        "EMAIL_REPLY_TO",
        "SES_CONFIGURATION_SET",
        "SENDGRID_SECRET_ARN",
        "UNSUBSCRIBE_SECRET_ARN",
        "API_BASE_URL",
        "EMAIL_DLQ_URL",
    },
    "DirectoryFunction": {"DIRECTORY_DLQ_URL"},
    "FeedbackFunction": {"FEEDBACK_DLQ_URL", "SES_CONFIGURATION_SET"},
    "PushSenderFunction": {"FCM_SECRET_ARN", "PUSH_DLQ_URL"},
    "SmsSenderFunction": {"TWILIO_SECRET_ARN", "TWILIO_STATUS_CALLBACK_URL", "SMS_DLQ_URL"},
    "RealtimeSenderFunction": {"PUSHER_SECRET_ARN", "REALTIME_DLQ_URL", "PRESENCE_MAX_AGE_SECONDS"},
    "WebhookSenderFunction": {"WEBHOOK_SECRET_PREFIX", "WEBHOOK_DLQ_URL"},
}

PSEUDO_PARAMETERS = {
    "AWS::AccountId",
    "AWS::Region",
    "AWS::Partition",
    "AWS::StackName",
    "AWS::StackId",
    "AWS::URLSuffix",
    "AWS::NoValue",
    "AWS::NotificationARNs",
}


# ------------------------------------------------------------------------------------ queues
def dead_letter_queues(template: dict[str, Any]) -> dict[str, str]:
    """DLQ logical id -> source queue logical id."""
    return {
        target_id(props(q)["RedrivePolicy"]["deadLetterTargetArn"]): source
        for source, q in resources_of(template, "AWS::SQS::Queue").items()
        if "RedrivePolicy" in props(q)
    }


def test_every_sqs_event_source_has_six_times_the_function_timeout(translated: dict[str, Any]) -> None:
    mappings = resources_of(translated, "AWS::Lambda::EventSourceMapping")
    assert len(mappings) >= len(FUNCTIONS), (
        f"expected an SQS event source per function, found {sorted(mappings)}"
    )
    queues = resources_of(translated, "AWS::SQS::Queue")
    for mapping_id, mapping in mappings.items():
        queue_id = target_id(props(mapping)["EventSourceArn"])
        function_id = target_id(props(mapping)["FunctionName"])
        timeout = props(translated["Resources"][function_id]).get("Timeout", 3)
        visibility = props(queues[queue_id]).get("VisibilityTimeout", 30)
        assert visibility >= 6 * timeout, (
            f"{queue_id} VisibilityTimeout {visibility} < 6 x {function_id} Timeout {timeout} "
            f"({6 * timeout}): messages would be redelivered while still being processed"
        )
        p = props(mapping)
        assert "ReportBatchItemFailures" in p.get("FunctionResponseTypes", []), (
            f"{mapping_id}: no ReportBatchItemFailures (one bad message would retry the whole batch)"
        )
        # the router shares its calls across up to 100 ingest records (decision 030); broadcasts
        # keep 10 (their pace, decision 027), the senders too (a push batch's concurrent sends,
        # decision 026). Above 10, SQS needs a window of at least 1 s.
        batch_size = 100 if queue_id == "IngestQueue" else 10
        assert p.get("BatchSize") == batch_size and p.get("MaximumBatchingWindowInSeconds") == 1, (
            f"{mapping_id}: BatchSize {p.get('BatchSize')}, window {p.get('MaximumBatchingWindowInSeconds')}"
        )
        assert (p.get("ScalingConfig") or {}).get("MaximumConcurrency"), (
            f"{mapping_id}: no ScalingConfig.MaximumConcurrency (unbounded provider concurrency)"
        )
    for queue_id, timeout in FUTURE_CONSUMER_TIMEOUTS.items():
        visibility = props(queues[queue_id]).get("VisibilityTimeout", 30)
        assert visibility >= 6 * timeout, f"{queue_id} VisibilityTimeout {visibility} < 6 x {timeout}"


def test_a_broadcast_cannot_starve_transactional_notifications(
    template: dict[str, Any], translated: dict[str, Any]
) -> None:
    """Decision 027: broadcast recipients wait on their own queue, read by at most
    `BroadcastConcurrency` routers at once, by default fewer than the ingest queue's (transactional)."""
    mappings = resources_of(translated, "AWS::Lambda::EventSourceMapping")
    limit = {
        target_id(props(m)["EventSourceArn"]): props(m)["ScalingConfig"]["MaximumConcurrency"]
        for m in mappings.values()
        if target_id(props(m)["FunctionName"]) == "RouterFunction"
    }
    assert limit["BroadcastQueue"] == {"Ref": "BroadcastConcurrency"}
    parameter = template["Parameters"]["BroadcastConcurrency"]
    assert isinstance(limit["IngestQueue"], int)
    assert parameter["MinValue"] <= parameter["Default"] < limit["IngestQueue"]
    router = props(template["Resources"]["RouterFunction"])
    assert router["Environment"]["Variables"]["BROADCAST_QUEUE_URL"] == {"Ref": "BroadcastQueue"}


def test_every_queue_has_a_dead_letter_queue_and_encryption(template: dict[str, Any]) -> None:
    queues = resources_of(template, "AWS::SQS::Queue")
    dlqs = dead_letter_queues(template)
    expected = {
        "IngestQueue",
        "BroadcastQueue",
        "EmailQueue",
        "PushQueue",
        "SmsQueue",
        "RealtimeQueue",
        "WebhookQueue",
        "FeedbackQueue",
    }
    assert expected <= set(queues), f"missing queues: {expected - set(queues)}"
    # Source queues first: a missing redrive is reported on the queue, not on its orphaned DLQ.
    for queue_id, queue in sorted(queues.items(), key=lambda kv: (kv[0].endswith("DeadLetterQueue"), kv[0])):
        p = props(queue)
        assert p.get("SqsManagedSseEnabled") is True or "KmsMasterKeyId" in p, f"{queue_id} is not encrypted"
        if queue_id.endswith("DeadLetterQueue"):
            assert queue_id in dlqs, f"{queue_id} is named as a DLQ but no queue redrives to it"
            assert p.get("MessageRetentionPeriod") == DLQ_RETENTION, (
                f"{queue_id} (DLQ of {dlqs[queue_id]}) keeps messages {p.get('MessageRetentionPeriod')} s, "
                f"expected {DLQ_RETENTION} (14 days)"
            )
            assert "RedrivePolicy" not in p, f"{queue_id} is a DLQ with its own redrive"
            continue
        redrive = p.get("RedrivePolicy")
        assert redrive, f"{queue_id} has no RedrivePolicy: poison messages would retry until they expire"
        # Channel queues: sized from the outage tolerance (tests/infra/test_outage_sizing.py).
        expected_receives = template_max_receive_count() if queue_id in CHANNEL_QUEUES else 5
        assert redrive.get("maxReceiveCount") == expected_receives, (
            f"{queue_id} maxReceiveCount {redrive.get('maxReceiveCount')} != {expected_receives}"
        )
        dlq = target_id(redrive["deadLetterTargetArn"])
        assert dlq == queue_id.replace("Queue", "DeadLetterQueue"), f"{queue_id} redrives to {dlq}"


def test_every_dead_letter_queue_has_an_alarm(template: dict[str, Any]) -> None:
    alarms = resources_of(template, "AWS::CloudWatch::Alarm")
    dlqs = dead_letter_queues(template)
    assert len(dlqs) == 9, f"expected 9 DLQs, found {sorted(dlqs)}"
    for dlq in dlqs:
        matching = [
            (alarm_id, props(alarm))
            for alarm_id, alarm in alarms.items()
            if any(target_id(d.get("Value")) == dlq for d in props(alarm).get("Dimensions", []))
        ]
        assert matching, f"no CloudWatch alarm watches {dlq}"
        alarm_id, p = matching[0]
        assert (
            p.get("Namespace") == "AWS/SQS" and p.get("MetricName") == "ApproximateNumberOfMessagesVisible"
        ), f"{alarm_id} watches {p.get('Namespace')}/{p.get('MetricName')}"
        assert p.get("Threshold") == 0 and p.get("ComparisonOperator") == "GreaterThanThreshold", (
            f"{alarm_id} must fire on any message (> 0), "
            f"has {p.get('ComparisonOperator')} {p.get('Threshold')}"
        )
        assert "AlarmTopic" in {target_id(a) for a in p.get("AlarmActions", [])}, (
            f"{alarm_id} does not notify AlarmTopic"
        )


# ------------------------------------------------------------------------------------ tables
@pytest.mark.parametrize("table_id", sorted(TABLES))
def test_table_matches_contract(template: dict[str, Any], table_id: str) -> None:
    resource = template["Resources"].get(table_id)
    assert resource is not None, f"template.yaml has no {table_id}"
    p, spec = props(resource), TABLES[table_id]
    assert p.get("BillingMode") == "PAY_PER_REQUEST", f"{table_id} BillingMode {p.get('BillingMode')}"
    assert (p.get("PointInTimeRecoverySpecification") or {}).get("PointInTimeRecoveryEnabled") is True, (
        f"{table_id} has no point-in-time recovery"
    )
    assert (p.get("SSESpecification") or {}).get("SSEEnabled") is True, f"{table_id} has no SSESpecification"
    ttl = p.get("TimeToLiveSpecification") or {}
    assert ttl == {"AttributeName": spec["ttl"], "Enabled": True}, (
        f"{table_id} TTL {ttl}, expected {spec['ttl']}"
    )
    keys = [(k["AttributeName"], k["KeyType"]) for k in p["KeySchema"]]
    assert keys == spec["keys"], f"{table_id} keys {keys}, contract says {spec['keys']}"
    for kind, prop in (("gsi", "GlobalSecondaryIndexes"), ("lsi", "LocalSecondaryIndexes")):
        # a conditional (Fn::If) index is off with the default parameters (decision 033)
        actual = {i["IndexName"]: i for i in p.get(prop, []) if "IndexName" in i}
        assert set(actual) == set(spec[kind]), (
            f"{table_id} {prop} {sorted(actual)}, contract {sorted(spec[kind])}"
        )
        for name, (index_keys, projection) in spec[kind].items():
            got = [(k["AttributeName"], k["KeyType"]) for k in actual[name]["KeySchema"]]
            assert got == index_keys, f"{table_id}.{name} keys {got}, contract {index_keys}"
            if projection:
                assert actual[name]["Projection"]["ProjectionType"] == projection, (
                    f"{table_id}.{name} projection"
                )
    declared = {a["AttributeName"] for a in p["AttributeDefinitions"]}
    used = {k for k, _ in spec["keys"]} | {
        k for kind in ("gsi", "lsi") for index_keys, _ in spec[kind].values() for k, _ in index_keys
    }
    assert declared == used, (
        f"{table_id} AttributeDefinitions {sorted(declared)} != key attributes {sorted(used)}"
    )
    policy = "Retain" if spec["retain"] else "Delete"
    assert resource.get("DeletionPolicy") == policy and resource.get("UpdateReplacePolicy") == policy, (
        f"{table_id}: DeletionPolicy/UpdateReplacePolicy should be {policy}"
    )


def test_every_table_is_on_demand_with_pitr(translated: dict[str, Any]) -> None:
    tables = resources_of(translated, "AWS::DynamoDB::Table")
    assert set(tables) == set(TABLES), f"tables {sorted(tables)} differ from the contract {sorted(TABLES)}"
    for table_id, table in tables.items():
        p = props(table)
        assert p.get("BillingMode") == "PAY_PER_REQUEST", f"{table_id} is not PAY_PER_REQUEST"
        assert p.get("PointInTimeRecoverySpecification", {}).get("PointInTimeRecoveryEnabled") is True, (
            f"{table_id} has no PITR"
        )


# --------------------------------------------------------------------------------- functions
@pytest.mark.parametrize("function_id", sorted(FUNCTIONS))
def test_function_matches_contract(
    template: dict[str, Any], translated: dict[str, Any], function_id: str
) -> None:
    folder, queue = FUNCTIONS[function_id]
    sam = template["Resources"].get(function_id)
    assert sam is not None and sam["Type"] == "AWS::Serverless::Function", (
        f"no AWS::Serverless::Function {function_id}"
    )
    assert props(sam).get("CodeUri") == folder, (
        f"{function_id} CodeUri {props(sam).get('CodeUri')!r} != {folder!r}"
    )
    assert (REPO_ROOT / folder / "requirements.txt").is_file(), f"{folder}requirements.txt is missing"
    events = [e for e in props(sam).get("Events", {}).values() if e.get("Type") == "SQS"]
    queues = queue if isinstance(queue, list) else [queue]
    assert [target_id(e["Properties"]["Queue"]) for e in events] == queues, (
        f"{function_id} must consume {queue}"
    )

    fn = props(translated["Resources"][function_id])
    assert fn.get("Runtime") == "python3.13" and fn.get("Architectures") == ["arm64"], (
        f"{function_id}: {fn.get('Runtime')} {fn.get('Architectures')}"
    )
    assert fn.get("Handler") == "app.lambda_handler", f"{function_id} handler {fn.get('Handler')}"
    assert fn.get("TracingConfig", {}).get("Mode") == "Active", f"{function_id} tracing is not Active"
    layers = [target_id(layer) for layer in fn.get("Layers", [])]
    assert len(layers) == 1 and layers[0].startswith("HeraldLayer"), f"{function_id} layers {layers}"
    env = set(fn.get("Environment", {}).get("Variables", {}))
    missing = (COMMON_ENV | FUNCTION_ENV[function_id]) - env
    assert not missing, f"{function_id} lacks environment variables {sorted(missing)}"


def test_layer_builds_for_arm64(template: dict[str, Any]) -> None:
    layer = template["Resources"].get("HeraldLayer")
    assert layer is not None and layer["Type"] == "AWS::Serverless::LayerVersion", "no HeraldLayer"
    p = props(layer)
    assert p.get("ContentUri") == "layers/herald/", f"HeraldLayer ContentUri {p.get('ContentUri')!r}"
    assert p.get("CompatibleRuntimes") == ["python3.13"] and p.get("CompatibleArchitectures") == ["arm64"]
    # Without BuildArchitecture the layer silently gets x86_64 wheels (PLATFORM.md).
    assert layer.get("Metadata") == {"BuildMethod": "python3.13", "BuildArchitecture": "arm64"}, (
        f"HeraldLayer Metadata {layer.get('Metadata')}: needs BuildMethod python3.13, BuildArchitecture arm64"
    )


def test_provider_sdks_only_in_their_function() -> None:
    problems = []
    pins: dict[str, set[str]] = {}
    for requirements in sorted(REPO_ROOT.glob("functions/*/requirements.txt")):
        folder = requirements.parent.name
        for line in requirements.read_text(encoding="utf-8").splitlines():
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            name = re.split(r"[\s=<>!~\[;]", line, maxsplit=1)[0].lower().replace("_", "-")
            owner = PROVIDER_SDKS.get(name)
            if owner and owner != folder and folder not in SDK_HELPERS.get(name, set()):
                problems.append(f"functions/{folder}/requirements.txt lists {name} (belongs to {owner})")
            if owner:
                pins.setdefault(name, set()).add(line.replace(" ", ""))
            if not re.search(r"==\S+", line):
                problems.append(f"functions/{folder}/requirements.txt: {line!r} is not pinned with ==")
    for name, owner in PROVIDER_SDKS.items():
        text = (REPO_ROOT / "functions" / owner / "requirements.txt").read_text(encoding="utf-8")
        if not re.search(rf"^{re.escape(name)}==", text, re.MULTILINE | re.IGNORECASE):
            problems.append(f"functions/{owner}/requirements.txt does not pin {name}")
    problems += [
        f"{name} is pinned differently: {sorted(found)}" for name, found in pins.items() if len(found) > 1
    ]
    assert not problems, "\n".join(problems)


# ------------------------------------------------------------------------- references, rules
def test_every_reference_resolves(translated: dict[str, Any]) -> None:
    """Refs, GetAtts and ${X} in Subs name a parameter, a resource or a pseudo parameter
    (cfn-lint misses some of these in SAM-only places such as environment variables)."""
    known = set(translated.get("Parameters", {})) | set(translated["Resources"]) | PSEUDO_PARAMETERS
    problems = []
    for path, node in walk({"Resources": translated["Resources"], "Outputs": translated.get("Outputs", {})}):
        if not isinstance(node, dict) or len(node) != 1:
            continue
        if "Ref" in node or "Fn::GetAtt" in node:
            name = target_id(node)
            if name not in known:
                problems.append(f"{path}: {node}")
        elif "Fn::Sub" in node:
            sub = node["Fn::Sub"]
            text, local = (sub[0], set(sub[1])) if isinstance(sub, list) else (sub, set())
            for name in re.findall(r"\$\{([^}!]+)\}", text):
                base = name.split(".", 1)[0]
                if base not in known and base not in local:
                    problems.append(f"{path}: ${{{name}}}")
    assert not problems, "references to nothing:\n" + "\n".join(problems)


def test_event_rules_target_queues_allowed_by_a_queue_policy(template: dict[str, Any]) -> None:
    """Every rule targets SQS (moto delivers only to SQS, and a queue is the right buffer in AWS) and
    the target queue's policy lets exactly that rule send."""
    rules = resources_of(template, "AWS::Events::Rule")
    assert {"NotificationRequestedRule", "UserDirectoryRule", "SesFeedbackRule"} <= set(rules), (
        f"rules: {sorted(rules)}"
    )
    policies = resources_of(template, "AWS::SQS::QueuePolicy")
    for rule_id, rule in rules.items():
        for target in props(rule)["Targets"]:
            queue_id = target_id(target["Arn"])
            assert template["Resources"].get(queue_id, {}).get("Type") == "AWS::SQS::Queue", (
                f"{rule_id} targets {queue_id}, not an SQS queue"
            )
            allowed = [
                s
                for policy in policies.values()
                if queue_id in {target_id(q) for q in props(policy)["Queues"]}
                for s in as_list(props(policy)["PolicyDocument"]["Statement"])
                if s.get("Principal") == {"Service": "events.amazonaws.com"}
                and target_id(s.get("Condition", {}).get("ArnEquals", {}).get("aws:SourceArn")) == rule_id
            ]
            assert allowed, f"no queue policy on {queue_id} lets events.amazonaws.com send for {rule_id}"
    herald = props(rules["NotificationRequestedRule"])
    assert target_id(herald.get("EventBusName")) == "HeraldBus", (
        "NotificationRequestedRule is not on HeraldBus"
    )
    assert herald["EventPattern"] == {"detail-type": ["NotificationRequested"]}
    assert target_id(herald["Targets"][0]["Arn"]) == "IngestQueue"
    directory = props(rules["UserDirectoryRule"])
    assert target_id(directory.get("EventBusName")) == "HeraldBus", "UserDirectoryRule is not on HeraldBus"
    assert directory["EventPattern"] == {"detail-type": ["UserUpserted", "UserDeleted"]}
    assert target_id(directory["Targets"][0]["Arn"]) == "DirectoryQueue"
    ses = props(rules["SesFeedbackRule"])
    assert "EventBusName" not in ses, "SES can only publish to the default bus"
    assert ses["EventPattern"].get("source") == ["aws.ses"]
    assert target_id(ses["Targets"][0]["Arn"]) == "FeedbackQueue"


def test_ses_configuration_set_publishes_feedback_to_default_bus(template: dict[str, Any]) -> None:
    destination = props(template["Resources"]["EmailConfigurationSetEventDestination"])
    assert target_id(destination["ConfigurationSetName"]) == "EmailConfigurationSet"
    event_destination = destination["EventDestination"]
    assert event_destination.get("Enabled") is True
    types = {t.lower().replace("_", "") for t in event_destination["MatchingEventTypes"]}
    required = {"bounce", "complaint", "delivery", "reject", "renderingfailure", "deliverydelay"}
    assert required <= types, f"SES events not published: {required - types}"
    bus = event_destination["EventBridgeDestination"]["EventBusArn"]
    assert str(bus.get("Fn::Sub", bus)).endswith(":event-bus/default"), (
        f"SES destination {bus} is not the default bus"
    )


def test_http_api_uses_jwt_by_default(template: dict[str, Any]) -> None:
    api = props(template["Resources"]["HttpApi"])
    auth = api["Auth"]
    authorizer = auth["Authorizers"][auth["DefaultAuthorizer"]]
    assert authorizer["IdentitySource"] == "$request.header.Authorization"
    jwt = authorizer["JwtConfiguration"]
    assert target_id(jwt["issuer"]) == "JwtIssuer" and target_id(jwt["audience"]) == "JwtAudience", jwt
    assert api.get("AccessLogSettings", {}).get("DestinationArn"), "HttpApi has no access logs"
    assert api.get("CorsConfiguration"), "HttpApi has no CORS configuration"


def test_outputs(template: dict[str, Any]) -> None:
    outputs = template.get("Outputs", {})
    expected = {"HeraldBusName", "HeraldBusArn", "ApiUrl", "EscalationStateMachineArn"}
    expected |= {f"{t}Name" for t in TABLES}
    expected |= {
        f"{q}QueueUrl" for q in ("Ingest", "Email", "Push", "Sms", "Realtime", "Webhook", "Feedback")
    }
    assert not expected - set(outputs), f"missing outputs: {sorted(expected - set(outputs))}"
    assert outputs["HeraldBusName"]["Value"] == {"Fn::GetAtt": ["HeraldBus", "Name"]}, (
        "use !GetAtt HeraldBus.Name"
    )


def test_samconfig_environments() -> None:
    config = tomllib.loads(SAMCONFIG_PATH.read_text(encoding="utf-8"))
    assert config.get("version") == 0.1
    for env, stage in (("default", "dev"), ("prod", "prod")):
        section = config.get(env)
        assert section, f"samconfig.toml has no [{env}] environment"
        assert section["global"]["parameters"].get("stack_name"), f"[{env}] has no stack_name"
        deploy = section["deploy"]["parameters"]
        assert set(deploy["capabilities"].split()) == {"CAPABILITY_IAM", "CAPABILITY_AUTO_EXPAND"}, env
        assert deploy.get("resolve_s3") is True and deploy.get("region"), env
        assert f"Stage={stage}" in as_list(deploy["parameter_overrides"]), (
            f"[{env}] does not deploy Stage={stage}"
        )
        assert "confirm_changeset" in deploy, env
        build = section["build"]["parameters"]
        assert build.get("parallel") is True and build.get("cached") is True, env
        assert section["validate"]["parameters"].get("lint") is True, env


DIGEST_ENV = {"DIGEST_LOCAL_HOUR", "DIGEST_MIN_INTERVAL_SECONDS", "APP_BASE_URL"}


def test_the_digest_function_runs_on_its_schedule(
    template: dict[str, Any], translated: dict[str, Any]
) -> None:
    """Decision 020: no queue; a Schedule event whose rate is a parameter (15 minutes), the local hour
    a parameter (9), an alarm when it keeps failing."""
    sam = template["Resources"]["DigestFunction"]
    assert props(sam)["CodeUri"] == "functions/digest/"
    assert (REPO_ROOT / "functions/digest/requirements.txt").is_file()
    events = list(props(sam)["Events"].values())
    assert [e["Type"] for e in events] == ["Schedule"]
    assert target_id(events[0]["Properties"]["Schedule"]) == "DigestSchedule"
    parameters = template["Parameters"]
    assert parameters["DigestSchedule"]["Default"] == "rate(15 minutes)"
    assert parameters["DigestLocalHour"]["Default"] == 9
    assert parameters["DigestLocalHour"]["MaxValue"] < 21  # the window ends at 21:00 local

    fn = props(translated["Resources"]["DigestFunction"])
    assert (fn["Runtime"], fn["Architectures"], fn["Handler"]) == (
        "python3.13",
        ["arm64"],
        "app.lambda_handler",
    )
    assert fn["TracingConfig"]["Mode"] == "Active"
    layers = [target_id(layer) for layer in fn["Layers"]]
    assert len(layers) == 1 and str(layers[0]).startswith("HeraldLayer"), layers
    missing = (COMMON_ENV | DIGEST_ENV) - set(fn["Environment"]["Variables"])
    assert not missing, f"DigestFunction lacks environment variables {sorted(missing)}"
    rules = resources_of(translated, "AWS::Events::Rule")
    [rule] = [r for r in rules.values() if target_id(props(r)["Targets"][0]["Arn"]) == "DigestFunction"]
    assert target_id(props(rule)["ScheduleExpression"]) == "DigestSchedule"
    alarm = props(template["Resources"]["DigestFunctionErrorsAlarm"])
    assert (alarm["Namespace"], alarm["MetricName"]) == ("AWS/Lambda", "Errors")
    assert target_id(alarm["Dimensions"][0]["Value"]) == "DigestFunction"
    assert target_id(alarm["AlarmActions"][0]) == "AlarmTopic"
