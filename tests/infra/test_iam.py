"""Least privilege, checked on the translated template (so SAM's policy-template expansions and the
roles it generates are included)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.infra.helpers import as_list, policy_statements, props, resources_of, target_id

pytestmark = pytest.mark.infra

# Actions that do not support resource-level permissions and therefore legitimately use "*".
RESOURCE_STAR_ALLOWED = {
    "scheduler:ListSchedules",  # no resource-level permissions (the schedules function lists its group)
    # Step Functions -> CloudWatch Logs vended log delivery
    "logs:CreateLogDelivery",
    "logs:GetLogDelivery",
    "logs:UpdateLogDelivery",
    "logs:DeleteLogDelivery",
    "logs:ListLogDeliveries",
    "logs:PutResourcePolicy",
    "logs:DescribeResourcePolicies",
    "logs:DescribeLogGroups",
    # X-Ray
    "xray:PutTraceSegments",
    "xray:PutTelemetryRecords",
    "xray:GetSamplingRules",
    "xray:GetSamplingTargets",
}

# AWS managed policies SAM attaches by itself: basic logging, X-Ray for Tracing, and the SQS event
# source's poller (sqs:ReceiveMessage/DeleteMessage/GetQueueAttributes; AWS's policy uses "*").
ALLOWED_MANAGED_POLICIES = {
    "AWSLambdaBasicExecutionRole",
    "AWSXrayWriteOnlyAccess",
    "AWSLambdaSQSQueueExecutionRole",
}


def is_wildcard(action: str) -> bool:
    return action == "*" or action.endswith(":*")


def test_no_wildcard_actions(translated: dict[str, Any]) -> None:
    statements = list(policy_statements(translated))
    assert len(statements) > 20, "found suspiciously few IAM statements: is the walker broken?"
    problems = []
    for where, statement in statements:
        if "NotAction" in statement and statement["Effect"] == "Allow":
            problems.append(f"{where}: Allow with NotAction grants everything else")
        for action in as_list(statement.get("Action")):
            if not isinstance(action, str):
                problems.append(f"{where}: action {action!r} is not a literal string")
            elif is_wildcard(action):
                problems.append(f"{where}: wildcard action {action!r}")
    assert not problems, "IAM statements with too broad actions:\n" + "\n".join(problems)


def test_resource_star_only_for_actions_without_resource_level_permissions(
    translated: dict[str, Any],
) -> None:
    problems = []
    for where, statement in policy_statements(translated):
        if statement["Effect"] != "Allow" or "*" not in as_list(statement.get("Resource")):
            continue
        for action in as_list(statement.get("Action")):
            if action not in RESOURCE_STAR_ALLOWED:
                problems.append(f"{where}: {action} on Resource '*'")
    assert not problems, "scope these statements to the resources they need:\n" + "\n".join(problems)


def test_only_the_operator_function_scans_and_only_its_listings(translated: dict[str, Any]) -> None:
    """No delivery path scans a table; the operator console's two listings (who is online, the
    suppression list; decision 038) are Scans, granted to the operator function alone."""
    scans = [
        where for where, st in policy_statements(translated) if "dynamodb:Scan" in as_list(st.get("Action"))
    ]
    assert all(where.startswith("OperatorFunctionRole.") for where in scans), scans
    assert role_actions(translated, "OperatorFunction")["dynamodb:Scan"] == {
        "PresenceTable",
        "SuppressionTable",
    }


def test_only_expected_managed_policies(translated: dict[str, Any]) -> None:
    problems = []
    for logical_id, role in resources_of(translated, "AWS::IAM::Role").items():
        for arn in props(role).get("ManagedPolicyArns", []):
            name = arn.rsplit("/", 1)[-1] if isinstance(arn, str) else arn
            if name not in ALLOWED_MANAGED_POLICIES:
                problems.append(f"{logical_id}: managed policy {arn!r}")
    assert not problems, "unexpected managed policies (use scoped policy templates):\n" + "\n".join(problems)


def role_actions(translated: dict[str, Any], function_id: str) -> dict[str, set[str]]:
    """action -> logical ids (or raw resources) it is granted on, for a function's inline policies."""
    function = translated["Resources"][function_id]
    role_id = target_id(props(function)["Role"])
    granted: dict[str, set[str]] = {}
    for policy in _unwrap_if(props(translated["Resources"][role_id]).get("Policies", [])):
        for statement in as_list(policy["PolicyDocument"]["Statement"]):
            if statement.get("Effect") != "Allow":
                continue
            resources = {_resource_name(r) for r in as_list(statement.get("Resource"))}
            for action in as_list(statement.get("Action")):
                granted.setdefault(action, set()).update(resources)
    return granted


def _unwrap_if(policies: list[Any]) -> list[dict[str, Any]]:
    """Role policies, with both branches of a conditional (Fn::If) policy (AWS::NoValue dropped)."""
    unwrapped = []
    for policy in policies:
        if isinstance(policy, dict) and "Fn::If" in policy:
            unwrapped += [p for p in policy["Fn::If"][1:] if isinstance(p, dict) and "PolicyDocument" in p]
        else:
            unwrapped.append(policy)
    return unwrapped


def _resource_name(resource: Any) -> str:
    """A readable name for a statement's resource: the logical id it refers to when there is one."""
    direct = target_id(resource)
    if direct:
        return direct
    if isinstance(resource, dict) and "Fn::Sub" in resource:
        sub = resource["Fn::Sub"]
        if isinstance(sub, list):
            names = [target_id(v) for v in sub[1].values()]
            return ",".join(n for n in names if n) or sub[0]
        return sub
    return str(resource)


SENDERS = {
    "EmailSenderFunction": "EmailQueue",
    "PushSenderFunction": "PushQueue",
    "SmsSenderFunction": "SmsQueue",
    "RealtimeSenderFunction": "RealtimeQueue",
    "WebhookSenderFunction": "WebhookQueue",
}


def test_router_permissions(translated: dict[str, Any]) -> None:
    granted = role_actions(translated, "RouterFunction")
    expectations = {
        "dynamodb:BatchGetItem": {"UsersTable", "PresenceTable", "SuppressionTable"},
        "dynamodb:Query": {"UsersTable"},  # ByRole fan-out
        "dynamodb:PutItem": {"NotificationsTable", "RateCountersTable", "IdempotencyTable"},
        "dynamodb:UpdateItem": {"NotificationsTable", "RateCountersTable", "IdempotencyTable"},
        "sqs:SendMessage*": {
            "IngestQueue",
            "EmailQueue",
            "PushQueue",
            "SmsQueue",
            "RealtimeQueue",
            "WebhookQueue",
        },
        "states:StartExecution": {"EscalationStateMachine"},
        "iam:PassRole": {"SchedulerRole"},
        "sqs:SendMessage": {"IngestDeadLetterQueue"},
    }
    for action, needed in expectations.items():
        missing = needed - granted.get(action, set())
        assert not missing, f"RouterFunction lacks {action} on {sorted(missing)} (has {granted.get(action)})"
    assert "scheduler:CreateSchedule" in granted, "RouterFunction cannot create deferred-send schedules"
    for table in ("UsersTable", "PresenceTable", "SuppressionTable"):
        writes = [
            a
            for a in ("dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem")
            if table in granted.get(a, ())
        ]
        assert not writes, f"RouterFunction may write {table} ({writes}); it only reads it"


@pytest.mark.parametrize("function_id", sorted(SENDERS))
def test_sender_permissions(translated: dict[str, Any], function_id: str) -> None:
    granted = role_actions(translated, function_id)
    queue = SENDERS[function_id]
    assert granted.get("sqs:ChangeMessageVisibility") == {queue}, (
        f"{function_id} must change visibility on its own queue {queue} only, "
        f"has {granted.get('sqs:ChangeMessageVisibility')}"
    )
    for action in ("dynamodb:GetItem", "dynamodb:UpdateItem"):
        assert "NotificationsTable" in granted.get(action, set()), (
            f"{function_id} lacks {action} on NotificationsTable"
        )
    # a message whose record is gone: the person's directory item may be a tombstone (decision 017)
    assert "UsersTable" in granted.get("dynamodb:GetItem", set()), (
        f"{function_id} lacks GetItem on UsersTable"
    )
    if function_id == "PushSenderFunction":  # a dead token leaves the map and its owner item (017)
        assert "UsersTable" in granted.get("dynamodb:UpdateItem", set()), "push sender lacks UpdateItem"
        # a batch's tokens are checked against the suppression list in one read (decision 026)
        assert "SuppressionTable" in granted.get("dynamodb:BatchGetItem", set()), (
            "push sender lacks BatchGetItem"
        )
    if function_id == "RealtimeSenderFunction":  # triggers only on the occupancy Herald keeps
        assert "PresenceTable" in granted.get("dynamodb:BatchGetItem", set()), "no presence read"
        assert "PresenceTable" not in granted.get("dynamodb:GetItem", set()), "one read a batch"
    writes = ("dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:BatchWriteItem", "dynamodb:DeleteItem")
    assert not any("PresenceTable" in granted.get(a, set()) for a in writes), (
        f"{function_id} must not write presence (only the Pusher webhook receiver does)"
    )
    dlq = queue.replace("Queue", "DeadLetterQueue")
    assert granted.get("sqs:SendMessage") == {dlq, queue}, (
        f"{function_id} must send to its own DLQ {dlq} (rejections and outages, decisions 003 and "
        f"010) and renew waiting messages on its own queue {queue} only, has {granted.get('sqs:SendMessage')}"
    )
    forbidden = {
        a
        for a in granted
        if (a.startswith("sqs:SendMessage") and a != "sqs:SendMessage")
        or a in ("states:StartExecution", "scheduler:CreateSchedule", "iam:PassRole", "dynamodb:Scan")
        or a == "dynamodb:DeleteItem"
    }
    assert not forbidden, (
        f"{function_id} has permissions only the router (or nobody) needs: {sorted(forbidden)}"
    )
    task_answers = {a for a in granted if a.startswith("states:SendTask")}
    # the senders of the channels a chain's waiting step may use (catalog WAITING_CHANNELS)
    if function_id in ("PushSenderFunction", "RealtimeSenderFunction", "SmsSenderFunction"):
        for action in ("states:SendTaskSuccess", "states:SendTaskFailure"):
            assert granted.get(action) == {"EscalationStateMachine"}, (
                f"{function_id} needs {action} scoped to EscalationStateMachine, has {granted.get(action)}"
            )
    else:
        assert not task_answers, f"{function_id} does not take part in escalations but has {task_answers}"
    if "states:SendTaskFailure" in granted:  # an escalation step: it also ends an acknowledged chain (019)
        assert granted.get("states:SendTaskSuccess") == granted["states:SendTaskFailure"], (
            f"{function_id} may fail escalation steps, so it must answer acknowledged ones with "
            f"SendTaskSuccess on the same state machine, has {granted.get('states:SendTaskSuccess')}"
        )
    secrets = granted.get("secretsmanager:GetSecretValue", set())
    assert secrets, f"{function_id} cannot read its provider secret"
    # Every sender renders templates, and TEMPLATE_BUCKET (a global) makes the renderer read S3.
    for action in ("s3:GetObject", "s3:ListBucket"):
        assert granted.get(action), f"{function_id} renders templates but cannot {action} the template bucket"


def test_scheduler_role_is_limited_to_herald_queues_starting_escalations_and_the_bus(
    translated: dict[str, Any],
) -> None:
    role = props(translated["Resources"]["SchedulerRole"])
    principals = [
        s["Principal"]["Service"] for s in role["AssumeRolePolicyDocument"]["Statement"] if "Principal" in s
    ]
    assert principals == ["scheduler.amazonaws.com"], f"SchedulerRole trusts {principals}"
    granted = {
        (a, target_id(r))
        for policy in role.get("Policies", [])
        for s in as_list(policy["PolicyDocument"]["Statement"])
        for a in as_list(s["Action"])
        for r in as_list(s["Resource"])
    }
    assert {a for a, _ in granted} == {"sqs:SendMessage", "states:StartExecution", "events:PutEvents"}, (
        granted
    )
    assert {r for a, r in granted if a == "states:StartExecution"} == {"EscalationStateMachine"}
    assert {r for a, r in granted if a == "events:PutEvents"} == {"HeraldBus"}  # recurring notifications


# What herald.erasure calls (decision 017): DELETE /v1/me runs it in the API function, the bus's
# UserDeleted in the directory function.
ERASURE = {
    "dynamodb:GetItem": {"UsersTable"},
    "dynamodb:Query": {"UsersTable", "NotificationsTable"},
    "dynamodb:BatchWriteItem": {"UsersTable", "NotificationsTable", "RateCountersTable"},
    "dynamodb:DeleteItem": {"UsersTable", "PresenceTable"},
    "dynamodb:UpdateItem": {"UsersTable", "SuppressionTable"},
    "dynamodb:ConditionCheckItem": {"UsersTable"},  # the profile goes only while the tombstone stands
}


@pytest.mark.parametrize("function_id", ["ApiFunction", "DirectoryFunction"])
def test_both_doors_to_erasure_may_do_what_it_does(translated: dict[str, Any], function_id: str) -> None:
    granted = role_actions(translated, function_id)
    for action, needed in ERASURE.items():
        missing = needed - granted.get(action, set())
        assert not missing, f"{function_id} lacks {action} on {sorted(missing)} (erasure needs it)"


def test_the_api_may_move_a_device_token_in_one_transaction(translated: dict[str, Any]) -> None:
    granted = role_actions(translated, "ApiFunction")
    for action in (
        "dynamodb:PutItem",
        "dynamodb:UpdateItem",
        "dynamodb:DeleteItem",
        "dynamodb:ConditionCheckItem",
    ):
        assert "UsersTable" in granted.get(action, set()), f"ApiFunction lacks {action} on UsersTable"


def test_the_api_ends_acknowledged_escalations_and_nothing_else(translated: dict[str, Any]) -> None:
    """POST .../ack and .../read answer the waiting step's task token (decision 019): SendTaskSuccess
    on the escalation state machine, never a failure, a start or a stop."""
    granted = role_actions(translated, "ApiFunction")
    assert granted.get("states:SendTaskSuccess") == {"EscalationStateMachine"}, granted.get(
        "states:SendTaskSuccess"
    )
    others = sorted(a for a in granted if a.startswith("states:") and a != "states:SendTaskSuccess")
    assert not others, f"ApiFunction only answers task tokens with success, but may also {others}"


def test_the_digest_reads_its_index_writes_notifications_and_queues_email_only(
    translated: dict[str, Any],
) -> None:
    """The digest (decision 020): Query on the sparse digest index (never the table, never a
    scan), conditional writes on notifications (TransactWriteItems is checked as its UpdateItems),
    one BatchGetItem of profiles and watermarks (and the tombstone check), SendMessage on the Email
    queue; nothing else: no Scan, no DeleteItem, no write to the Users table."""
    granted = role_actions(translated, "DigestFunction")
    # the index the function reads: DigestPending, or DigestDue while a stack migrates (decision 033)
    assert granted.pop("dynamodb:Query") == {"${NotificationsTable.Arn}/index/${Index}"}
    for action in ("dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem"):
        assert granted.pop(action) == {"NotificationsTable"}, action
    assert granted.pop("dynamodb:BatchGetItem") == {"UsersTable"}
    assert granted.pop("dynamodb:ConditionCheckItem") == {"UsersTable"}  # not erased (decision 017)
    assert granted.pop("sqs:SendMessage") == {"EmailQueue"}
    # it renders each notification's in-app title, and TEMPLATE_BUCKET makes the renderer read S3
    assert granted.pop("s3:GetObject") and granted.pop("s3:ListBucket")
    assert not granted, f"DigestFunction has permissions it never uses: {sorted(granted)}"


def test_the_feedback_function_updates_what_feedback_changes_and_nothing_else(
    translated: dict[str, Any],
) -> None:
    """SES feedback (decision 022): conditional updates of the delivery log, suppression entries and
    soft-bounce counters; a complainer's marketing opt-out (UserStore.edit_own: read, then one
    transaction checked as its UpdateItem and the not-erased ConditionCheck); powertools
    idempotency; rejections to its own DLQ. No Scan, no Query, no deletes of user data."""
    granted = role_actions(translated, "FeedbackFunction")
    assert granted.pop("dynamodb:UpdateItem") == {
        "NotificationsTable",
        "SuppressionTable",
        "RateCountersTable",
        "UsersTable",
        "IdempotencyTable",
    }
    assert granted.pop("dynamodb:GetItem") == {"UsersTable", "IdempotencyTable"}
    assert granted.pop("dynamodb:ConditionCheckItem") == {"UsersTable"}
    assert granted.pop("dynamodb:PutItem") == {"IdempotencyTable"}
    assert granted.pop("dynamodb:DeleteItem") == {"IdempotencyTable"}  # an idempotency record that failed
    assert granted.pop("sqs:SendMessage") == {"FeedbackDeadLetterQueue"}
    assert not granted, f"FeedbackFunction has permissions it never uses: {sorted(granted)}"


def test_the_api_verifies_provider_webhooks_and_deletes_no_suppression(
    translated: dict[str, Any],
) -> None:
    """The signed webhooks (decision 023): the API reads the Pusher and SendGrid (event webhook
    verification key) secrets, and the unsubscribe links' signing key (decision 024), and no other
    (Twilio's webhook has its own function, decision 035); it applies feedback with the updates it
    already has (delivery log, suppression, a complainer's opt-out), and never deletes or puts a
    suppression entry."""
    granted = role_actions(translated, "ApiFunction")
    assert granted.get("secretsmanager:GetSecretValue") == {
        "PusherSecret",
        "SendGridSecret",
        "UnsubscribeSigningSecret",  # verifies the one-click unsubscribe links (decision 024)
    }
    for table in ("NotificationsTable", "SuppressionTable", "UsersTable"):
        assert table in granted.get("dynamodb:UpdateItem", set()), f"ApiFunction cannot update {table}"
    writes = ("dynamodb:PutItem", "dynamodb:BatchWriteItem", "dynamodb:DeleteItem")
    assert not any("SuppressionTable" in granted.get(action, set()) for action in writes)


def test_the_twilio_webhook_updates_the_sms_log_and_lifts_nothing_but_sms_opt_outs(
    translated: dict[str, Any],
) -> None:
    """Decision 035: Twilio's auth token, the delivery log's conditional updates, suppression
    updates (STOP, unreachable numbers), the deletion of an `opted_out` entry (START) and the
    idempotency record that applies each inbound message once; nothing else."""
    granted = role_actions(translated, "TwilioWebhookFunction")
    assert granted.pop("secretsmanager:GetSecretValue") == {"TwilioSecret"}
    updated = granted.pop("dynamodb:UpdateItem")
    assert updated == {"NotificationsTable", "SuppressionTable", "IdempotencyTable"}
    assert granted.pop("dynamodb:DeleteItem") == {"SuppressionTable", "IdempotencyTable"}
    # each inbound STOP / START once, by its MessageSid (powertools' idempotency record)
    assert granted.pop("dynamodb:GetItem") == {"IdempotencyTable"}
    assert granted.pop("dynamodb:PutItem") == {"IdempotencyTable"}
    assert not granted, f"TwilioWebhookFunction has permissions it never uses: {sorted(granted)}"


def test_the_operator_function_reads_sends_and_lifts_and_nothing_else(translated: dict[str, Any]) -> None:
    """Decision 038: manual sends on the bus; the console's reads (notifications by person and by id,
    the two listings); a lift's transaction (the entry out, its lift record in, the soft-bounce count
    reset). No secret, no update of anyone's profile or delivery log."""
    granted = role_actions(translated, "OperatorFunction")
    assert granted.pop("events:PutEvents") == {"HeraldBus"}
    assert granted.pop("dynamodb:Query") == {
        "${NotificationsTable.Arn}/index/ByCreated",
        "${NotificationsTable.Arn}/index/ByNotification",
    }
    assert granted.pop("dynamodb:GetItem") == {"NotificationsTable", "SuppressionTable"}
    assert granted.pop("dynamodb:Scan") == {"PresenceTable", "SuppressionTable"}
    assert granted.pop("dynamodb:PutItem") == {"SuppressionTable"}
    assert granted.pop("dynamodb:DeleteItem") == {"SuppressionTable", "RateCountersTable"}
    assert not granted, f"OperatorFunction has permissions it never uses: {sorted(granted)}"


def test_the_app_api_holds_no_operator_permission(translated: dict[str, Any]) -> None:
    """The app-facing API (every person's token reaches it) cannot put events on the bus, scan, or
    lift a suppression: those are the operator function's (decision 038)."""
    granted = role_actions(translated, "ApiFunction")
    assert "events:PutEvents" not in granted
    assert "dynamodb:Scan" not in granted
    assert "SuppressionTable" not in granted.get("dynamodb:DeleteItem", set())


def test_the_schedules_function_manages_its_group_only_and_passes_the_scheduler_role(
    translated: dict[str, Any],
) -> None:
    granted = role_actions(translated, "SchedulesFunction")
    for action in ("scheduler:CreateSchedule", "scheduler:UpdateSchedule", "scheduler:DeleteSchedule"):
        [resource] = granted.get(action, set())
        assert "RecurringScheduleGroup" in json.dumps(resource), (action, resource)
    assert granted.get("iam:PassRole") == {"SchedulerRole"}
    assert "scheduler:ListSchedules" in granted
    assert not any(a.startswith("dynamodb:") or a.startswith("sqs:") for a in granted), granted
