"""Acknowledgements (decision 019) through the template's routes and JWT authorizer, on moto with the
escalation state machine really executing: `POST /v1/me/notifications/{id}/ack` (and reading the
notification) ends a waiting escalation with SendTaskSuccess, so no further channel is used; a late,
repeated or foreign ack is harmless.

The escalation's push step is sent by the real push sender through the FCM sandbox (the stack's FCM
secret is pointed at it), which stores the step's task token on the notification record, as in a
deployed stack."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from aws_lambda_powertools.utilities import parameters

from herald.messages import ChannelMessage
from herald.models import Channel
from local.sandboxes import SandboxHost, google_auth_on_loopback
from tests.integration.api.conftest import seed_notification
from tests.integration.channels.conftest import TEST_SETTINGS, Env, a_message, a_profile, handle
from tests.integration.channels.test_escalation_and_channels import (
    execution_status,
    run_primary,
    start_escalation,
    wait_for_messages,
)
from tests.support.api import ApiClient
from tests.support.stack import MotoStack

pytestmark = pytest.mark.integration

PAYMENT = a_message(Channel.PUSH).data


@pytest.fixture(scope="module")
def providers() -> Iterator[SandboxHost]:
    with google_auth_on_loopback(), SandboxHost(port=0) as host:
        yield host


@pytest.fixture
def env(stack: MotoStack, providers: SandboxHost, monkeypatch: pytest.MonkeyPatch) -> Iterator[Env]:
    """The stack with its FCM secret aimed at the sandbox, so the push sender can deliver (with the
    channel tests' short provider timeouts)."""
    providers.reset()
    for name, value in TEST_SETTINGS.items():
        monkeypatch.setenv(name, value)
    stack.client("secretsmanager").put_secret_value(
        SecretId=stack.secrets["FcmSecret"], SecretString=json.dumps(providers.credentials.secrets()["fcm"])
    )
    parameters.clear_caches()
    yield Env(stack=stack, sandbox=providers)
    parameters.clear_caches()
    sys.modules.pop("functions.push_sender.app", None)


@pytest.fixture
def task_answers(api: ApiClient) -> list[dict[str, Any]]:
    """Every SendTaskSuccess the API function makes (its own Step Functions client)."""
    calls: list[dict[str, Any]] = []
    api.module.services.stepfunctions.meta.events.register(
        "before-parameter-build.sfn.SendTaskSuccess", lambda params, **_: calls.append(params)
    )
    return calls


def escalate(env: Env, user: str = "u1", key: str = "pay-1") -> tuple[ChannelMessage, str]:
    """GIVEN an inbox notification whose escalation's push step was delivered and now waits for the
    acknowledgement (the push sender stored the task token). Returns the step and the execution."""
    notification_id = seed_notification(env.stack, user, key, type_name="payment_receipt", data=PAYMENT)
    env.put_profile(a_profile(user))
    primary = a_message(
        Channel.PUSH,
        notification_id=notification_id,
        user_id=user,
        event_id=key,
        device_tokens=[f"tok-{user}"],
    )
    arn = start_escalation(env, primary, "Push")
    assert run_primary(env, "Push", "push_sender") == {"batchItemFailures": []}
    record = env.record(primary)
    assert record["deliveries"]["push"]["state"] == "sent" and record["task_token"]
    assert execution_status(env, arn, "RUNNING") == "RUNNING"
    return primary, arn


def emails(env: Env) -> list[dict[str, Any]]:
    return env.client("sqs").receive_message(QueueUrl=env.stack.queue_urls["Email"]).get("Messages", [])


def test_an_ack_ends_the_escalation_and_no_email_is_sent(
    api: ApiClient, env: Env, task_answers: list[dict[str, Any]]
) -> None:
    primary, arn = escalate(env)

    answer = api.post(f"/v1/me/notifications/{primary.notification_id}/ack")

    assert answer.status == 200
    assert answer.json["id"] == primary.notification_id
    assert answer.json["acked_at"] and answer.json["seen_at"] and answer.json["read_at"] is None
    assert execution_status(env, arn, "SUCCEEDED") == "SUCCEEDED"
    assert emails(env) == []
    (call,) = task_answers
    assert json.loads(call["output"]) == {"acknowledged_at": answer.json["acked_at"], "via": "ack"}
    record = env.record(primary)
    assert "task_token" not in record  # answered: nothing left to answer
    assert record["acked_at"] == answer.json["acked_at"]
    assert len(env.sandbox.outbox.entries(provider="fcm")) == 1  # the push, and nothing after it


def test_a_second_ack_is_harmless_and_answers_nothing(
    api: ApiClient, env: Env, task_answers: list[dict[str, Any]]
) -> None:
    primary, arn = escalate(env)
    first = api.post(f"/v1/me/notifications/{primary.notification_id}/ack")
    assert execution_status(env, arn, "SUCCEEDED") == "SUCCEEDED"

    again = api.post(f"/v1/me/notifications/{primary.notification_id}/ack")

    assert (first.status, again.status) == (200, 200)
    assert again.json["acked_at"] == first.json["acked_at"]  # set once, never moved
    assert len(task_answers) == 1


def test_another_persons_ack_is_not_found_and_the_escalation_keeps_running(
    api: ApiClient, env: Env, task_answers: list[dict[str, Any]]
) -> None:
    primary, arn = escalate(env)

    for user, target in (("u2", primary.notification_id), ("u1", "ntf-" + "0" * 32), ("u1", "not-an-id")):
        answer = api.post(f"/v1/me/notifications/{target}/ack", user=user)
        assert answer.status == 404, (user, target)
        assert answer.json["error"]["code"] == "not_found"

    assert task_answers == []
    record = env.record(primary)
    assert record["task_token"] and "acked_at" not in record
    assert env.client("stepfunctions").describe_execution(executionArn=arn)["status"] == "RUNNING"
    env.client("stepfunctions").stop_execution(executionArn=arn)


def test_an_ack_after_the_escalation_moved_on_is_harmless(
    api: ApiClient, env: Env, task_answers: list[dict[str, Any]]
) -> None:
    """GIVEN the push step's wait ended without an acknowledgement (as on its timeout: the email step
    went) WHEN the app acknowledges late THEN 200, the stale token is answered once (Step Functions
    refuses it) and removed, and the acknowledgement is kept."""
    primary, arn = escalate(env)
    token = env.record(primary)["task_token"]
    env.client("stepfunctions").send_task_failure(
        taskToken=token, error="Test.Timeout", cause="no ack in time"
    )
    assert wait_for_messages(env, "Email")
    assert execution_status(env, arn, "SUCCEEDED") == "SUCCEEDED"

    answer = api.post(f"/v1/me/notifications/{primary.notification_id}/ack")

    assert answer.status == 200 and answer.json["acked_at"]
    assert [call["taskToken"] for call in task_answers] == [token]
    record = env.record(primary)
    assert "task_token" not in record and record["acked_at"] == answer.json["acked_at"]


def step_functions_answers(api: ApiClient, code: str) -> list[str]:
    """Until the returned list is cleared, the API's SendTaskSuccess calls get Step Functions' error
    `code` instead of reaching moto (moto answers InvalidToken for every late token)."""
    armed = [code]

    def refuse(**_: Any) -> tuple[SimpleNamespace, dict[str, Any]] | None:
        if not armed:
            return None
        return SimpleNamespace(status_code=400), {"Error": {"Code": armed[0], "Message": "refused"}}

    api.module.services.stepfunctions.meta.events.register("before-call.sfn.SendTaskSuccess", refuse)
    return armed


def waiting_token(stack: MotoStack, user: str, notification_id: str, token: str) -> None:
    stack.client("dynamodb").update_item(
        TableName=stack.tables["NotificationsTable"],
        Key={"user_id": {"S": user}, "notification_id": {"S": notification_id}},
        UpdateExpression="SET task_token = :t",
        ExpressionAttributeValues={":t": {"S": token}},
    )


@pytest.mark.parametrize("refusal", ["TaskTimedOut", "TaskDoesNotExist", "InvalidToken"])
def test_each_answer_step_functions_gives_a_late_ack_is_harmless(
    api: ApiClient, stack: MotoStack, task_answers: list[dict[str, Any]], refusal: str
) -> None:
    notification_id = seed_notification(stack, "u1", "pay-1")
    waiting_token(stack, "u1", notification_id, "token-of-a-finished-step")
    step_functions_answers(api, refusal)

    answer = api.post(f"/v1/me/notifications/{notification_id}/ack")

    assert answer.status == 200 and answer.json["acked_at"]
    assert [call["taskToken"] for call in task_answers] == ["token-of-a-finished-step"]
    assert api.post(f"/v1/me/notifications/{notification_id}/ack").status == 200
    assert len(task_answers) == 1  # the token went with the first answer


def test_an_answer_that_failed_is_retried_by_the_apps_retry(
    api: ApiClient, env: Env, task_answers: list[dict[str, Any]]
) -> None:
    """GIVEN Step Functions throttles the answer WHEN the app acknowledges THEN 500 in the one error
    shape, the acknowledgement is kept and so is the token; the app's retry ends the escalation."""
    primary, arn = escalate(env)
    throttled = step_functions_answers(api, "ThrottlingException")

    failed = api.post(f"/v1/me/notifications/{primary.notification_id}/ack")

    assert failed.status == 500 and failed.json["error"]["code"] == "internal"
    record = env.record(primary)
    assert record["acked_at"] and record["task_token"]
    assert env.client("stepfunctions").describe_execution(executionArn=arn)["status"] == "RUNNING"

    throttled.clear()
    retried = api.post(f"/v1/me/notifications/{primary.notification_id}/ack")

    assert retried.status == 200 and retried.json["acked_at"] == record["acked_at"]
    assert execution_status(env, arn, "SUCCEEDED") == "SUCCEEDED"
    assert emails(env) == []
    assert len(task_answers) == 2 and "task_token" not in env.record(primary)


def test_reading_the_notification_acknowledges_it(
    api: ApiClient, env: Env, task_answers: list[dict[str, Any]]
) -> None:
    primary, arn = escalate(env)

    answer = api.post(f"/v1/me/notifications/{primary.notification_id}/read")

    assert answer.status == 200
    assert answer.json["read_at"] and answer.json["acked_at"] == answer.json["read_at"]
    assert execution_status(env, arn, "SUCCEEDED") == "SUCCEEDED"
    assert emails(env) == []
    (call,) = task_answers
    assert json.loads(call["output"])["via"] == "read"
    assert "task_token" not in env.record(primary)


def test_read_all_does_not_acknowledge_a_waiting_escalation(
    api: ApiClient, env: Env, task_answers: list[dict[str, Any]]
) -> None:
    """Read-all clears the badge in one write; a page nobody looked at still escalates (decision 019)."""
    primary, arn = escalate(env)

    assert api.post("/v1/me/notifications/read-all").status == 200

    assert api.get("/v1/me/notifications/count").json["unread"] == 0
    assert task_answers == []
    record = env.record(primary)
    assert record["task_token"] and "acked_at" not in record
    assert env.client("stepfunctions").describe_execution(executionArn=arn)["status"] == "RUNNING"
    env.client("stepfunctions").stop_execution(executionArn=arn)


def test_seen_and_archive_do_not_acknowledge(
    api: ApiClient, env: Env, task_answers: list[dict[str, Any]]
) -> None:
    primary, arn = escalate(env)

    for action in ("seen", "archive"):
        answer = api.post(f"/v1/me/notifications/{primary.notification_id}/{action}")
        assert answer.status == 200 and answer.json["acked_at"] is None, action

    assert task_answers == []
    assert env.client("stepfunctions").describe_execution(executionArn=arn)["status"] == "RUNNING"
    env.client("stepfunctions").stop_execution(executionArn=arn)


def test_a_redelivered_step_after_the_ack_is_not_sent_again(
    api: ApiClient, env: Env, task_answers: list[dict[str, Any]]
) -> None:
    """GIVEN an acknowledged escalation WHEN SQS delivers its (already sent) push step again THEN no
    second push, and the step's token is not stored again (nothing is left for an ack to answer)."""
    primary, arn = escalate(env)
    token = env.record(primary)["task_token"]
    assert api.post(f"/v1/me/notifications/{primary.notification_id}/ack").status == 200
    assert execution_status(env, arn, "SUCCEEDED") == "SUCCEEDED"

    step = primary.model_copy(update={"escalation": True})
    env.enqueue("Push", json.dumps({"message": json.loads(step.queue_body()), "task_token": token}))
    assert handle(env, env.app("push_sender"), env.receive_event("Push")) == {"batchItemFailures": []}

    assert len(env.sandbox.outbox.entries(provider="fcm")) == 1
    record = env.record(primary)
    assert "task_token" not in record and record["deliveries"]["push"]["state"] == "sent"


def test_an_ack_without_an_escalation_answers_nothing(
    api: ApiClient, stack: MotoStack, task_answers: list[dict[str, Any]]
) -> None:
    notification_id = seed_notification(stack, "u1", "ord-1")

    answer = api.post(f"/v1/me/notifications/{notification_id}/ack")

    assert answer.status == 200 and answer.json["acked_at"]
    assert task_answers == []
    listed = api.get("/v1/me/notifications").json["items"][0]
    assert listed["acked_at"] == answer.json["acked_at"] and listed["read_at"] is None
    assert api.get("/v1/me/notifications/count").json == {"unread": 1, "unseen": 0}


def test_the_ack_route_refuses_a_missing_or_bad_token(api: ApiClient) -> None:
    path = f"/v1/me/notifications/ntf-{'0' * 32}/ack"
    for token in (
        None,
        api.issuer.token("u1", ttl=-60),
        api.issuer.token("u1", audience="someone-else"),
        "x.y.z",
    ):
        assert api.request("POST", path, user=None, token=token).status == 401, token
    assert api.events == []  # the function never ran
