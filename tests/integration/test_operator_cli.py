"""The `herald` operator CLI against template.yaml on moto, with notifications routed by the real
router handler: `trace` (by notification id and by event id), `user`, `explain` (a dry run that
writes and sends nothing), `suppression list | add | lift` (a lift records who and why).

The commands run as an operator runs them (`--local --state-file`), with the local target's AWS
client pointed at the in-process moto instead of the local stack's server; and once by a deployed
stack's name (`--stack-name`), its resources listed by CloudFormation."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber
from click.testing import CliRunner, Result

from herald.catalog import load_catalog
from herald.ingest import IngestEnvelope
from herald.routing.decision import notification_id_for
from herald.routing.held import LEGACY_SORT_KEY, HeldRequests
from herald.schedules import FILE_OWNER, ScheduleManager
from herald.ses_feedback import SoftBounces, soft_bounce_key
from herald.settings import SchedulesSettings, load
from herald.stores.dynamo import to_attributes
from herald.stores.keys import email_address, sms_address
from herald.stores.suppression import SuppressionChanged, SuppressionStore
from herald.stores.users import UserStore
from herald.users import UserProfile
from herald_cli.main import cli
from herald_cli.target import AwsTarget, LocalTarget
from tests.support.cli import section
from tests.support.lambda_context import FakeContext
from tests.support.sqs import sqs_event
from tests.support.stack import MotoStack, fresh_function_module

pytestmark = pytest.mark.integration

EMAIL = "ada@example.com"


@pytest.fixture
def herald(stack: MotoStack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """Run `herald <args> --local` against the moto stack; returns click's Result."""
    state_file = tmp_path / "stack.json"
    state_file.write_text(stack.description.to_json(), encoding="utf-8")
    monkeypatch.setattr(LocalTarget, "client", lambda self, service: stack.client(service))
    monkeypatch.setattr(LocalTarget, "operator", lambda self: "local:support-agent-7")

    def run(*args: str) -> Result:
        return CliRunner().invoke(cli, [*args, "--local", "--state-file", str(state_file)])

    return run


@pytest.fixture
def router(stack: MotoStack) -> Any:
    return fresh_function_module("functions.router.app")


def add_person(stack: MotoStack, user_id: str = "42") -> None:
    UserStore(stack.client("dynamodb"), stack.tables["UsersTable"]).put_profile(
        UserProfile.model_validate(
            {
                "user_id": user_id,
                "email": EMAIL,
                "phone": "+14155550100",
                "time_zone": "UTC",
                "devices": {"tok-1": {"platform": "android", "registered_at": "2026-01-01T00:00:00Z"}},
            }
        )
    )


def envelope_body(event_id: str, type_: str, user_id: str = "42") -> str:
    return json.dumps(
        {
            "version": "0",
            "id": f"id-{event_id}",
            "detail-type": "NotificationRequested",
            "source": "tests",
            "account": "123456789012",
            "time": "2026-11-22T12:00:00Z",
            "region": "us-east-1",
            "resources": [],
            "detail": {
                "event_id": event_id,
                "type": type_,
                "user_id": user_id,
                "data": load_catalog().types[type_].sample_data,
            },
        }
    )


def route(router: Any, event_id: str, type_: str, user_id: str = "42") -> None:
    response = router.lambda_handler(sqs_event(envelope_body(event_id, type_, user_id)), FakeContext())
    assert response == {"batchItemFailures": []}


def items(stack: MotoStack, table: str) -> list[dict[str, Any]]:
    return stack.client("dynamodb").scan(TableName=stack.tables[table])["Items"]


def test_trace_shows_the_decision_rule_by_rule_and_each_channel_queued(
    stack: MotoStack, router: Any, herald: Any
) -> None:
    add_person(stack)
    route(router, "evt-alert-1", "security_alert")

    by_event = herald("trace", "evt-alert-1")
    by_id = herald("trace", notification_id_for("evt-alert-1"))

    assert by_event.exit_code == 0, by_event.output
    assert by_id.output == by_event.output
    out = by_event.output
    assert f"notification {notification_id_for('evt-alert-1')}  event evt-alert-1  user 42" in out
    assert "security_alert · critical · security" in out
    assert "decision (rule by rule)" in out and "urgency_table" in out
    assert {line.split()[0]: line.split()[1] for line in section(out, "channels")} == {
        "push": "queued",
        "sms": "queued",
        "email": "queued",
        "realtime": "skipped",  # offline
    }
    log = section(out, "delivery log")
    assert sorted(line.split()[3] for line in log) == ["email", "push", "sms"]
    assert {line.split()[4] for line in log} == {"queued"}


def test_a_suppressed_address_is_shown_with_the_reason_the_router_left_it_out(
    stack: MotoStack, router: Any, herald: Any
) -> None:
    add_person(stack)
    SuppressionStore(stack.client("dynamodb"), stack.tables["SuppressionTable"]).suppress(
        email_address(EMAIL), "bounced", "ses", contact=EMAIL, notification_id="ntf-earlier"
    )
    route(router, "evt-alert-2", "security_alert")

    out = herald("trace", "evt-alert-2").output

    email_line = next(line for line in section(out, "channels") if line.split()[0] == "email")
    assert email_line.split()[1] == "suppressed"
    assert "suppression:" in email_line and "bounced" in email_line
    # never handed to the email sender
    assert all(line.split()[3] != "email" for line in section(out, "delivery log"))


def test_user_lists_the_persons_notifications_newest_first_with_their_outcomes(
    stack: MotoStack, router: Any, herald: Any
) -> None:
    add_person(stack)
    route(router, "evt-first", "security_alert")
    route(router, "evt-second", "order_shipped")

    result = herald("user", "42")

    assert result.exit_code == 0, result.output
    rows = result.output.strip().splitlines()[1:]
    newest_first = [notification_id_for("evt-second"), notification_id_for("evt-first")]
    assert [row.split()[2] for row in rows] == newest_first
    assert "order_shipped" in rows[0] and "push queued" in rows[0]
    assert "sms queued" in rows[1]
    assert "no notifications on record" in herald("user", "nobody").output


def test_explain_decides_as_the_router_would_and_writes_and_sends_nothing(
    stack: MotoStack, herald: Any
) -> None:
    add_person(stack)
    SuppressionStore(stack.client("dynamodb"), stack.tables["SuppressionTable"]).suppress(
        email_address(EMAIL), "complained", "sendgrid", contact=EMAIL
    )
    notifications_before = items(stack, "NotificationsTable")

    data = json.dumps(load_catalog().types["security_alert"].sample_data)
    result = herald("explain", "42", "security_alert", "--data", data)

    assert result.exit_code == 0, result.output
    assert "nothing is written or sent" in result.output
    assert any(
        line.split()[:3] == ["block", "suppression", "[email]"] for line in result.output.splitlines()
    ), result.output
    assert result.output.strip().splitlines()[-1] == "outcome: dispatched via push, sms"
    assert items(stack, "NotificationsTable") == notifications_before
    for queue in ("Email", "Push", "Sms", "Realtime", "Ingest"):
        assert stack.drain(queue) == []


def test_explain_says_when_the_router_would_reject_the_request(stack: MotoStack, herald: Any) -> None:
    add_person(stack)
    unknown = herald("explain", "42", "no_such_type")
    missing = herald("explain", "42", "order_shipped", "--data", "{}")
    assert unknown.exit_code == 1 and "would reject" in unknown.output and "no_such_type" in unknown.output
    assert missing.exit_code == 1 and "requires data fields" in missing.output
    assert herald("explain", "42", "order_shipped", "--data", "[1]").exit_code == 2


def test_a_lift_records_who_lifted_the_entry_and_why_and_the_router_uses_the_address_again(
    stack: MotoStack, router: Any, herald: Any
) -> None:
    add_person(stack)
    added = herald("suppression", "add", EMAIL, "--reason", "mailbox full for months")
    assert added.exit_code == 0, added.output

    listed = herald("suppression", "list", "--channel", "email")
    assert EMAIL in listed.output and "mailbox full for months" in listed.output
    assert "operator:local:support-agent-7" in listed.output
    assert herald("suppression", "list", "--channel", "sms").output.strip() == "no suppressed contacts"

    lifted = herald("suppression", "lift", EMAIL, "--why", "customer fixed their mailbox (ticket 1234)")
    assert lifted.exit_code == 0, lifted.output
    assert herald("suppression", "list").output.strip() == "no suppressed contacts"
    history = herald("suppression", "list", "--lifted").output
    assert email_address(EMAIL) in history
    assert "lifted by local:support-agent-7: customer fixed their mailbox (ticket 1234)" in history
    assert "mailbox full for months" in history
    assert EMAIL not in history  # the lift record keeps no plain contact: it outlives an erasure

    route(router, "evt-after-lift", "security_alert")
    assert "email    queued" in herald("trace", "evt-after-lift").output
    again = herald("suppression", "lift", EMAIL, "--why", "twice")
    assert again.exit_code == 1 and "is not suppressed" in again.output


def test_by_a_deployed_stacks_name_each_command_finds_its_tables_through_cloudformation(
    stack: MotoStack, router: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`--stack-name`: the tables are the stack's resources as CloudFormation lists them (here its
    answer is stubbed with the moto stack's physical ids); the lift is signed by the caller's ARN."""
    add_person(stack)
    route(router, "evt-deployed-1", "security_alert")
    resources = json.loads(stack.description.to_json())["resources"]
    summaries = [
        {
            "LogicalResourceId": logical_id,
            "PhysicalResourceId": str(resource["physical_id"]),
            "ResourceType": str(resource.get("type") or "AWS::CloudFormation::CustomResource"),
            "LastUpdatedTimestamp": datetime(2026, 12, 1, tzinfo=UTC),
            "ResourceStatus": "CREATE_COMPLETE",
        }
        for logical_id, resource in resources.items()
    ]
    cloudformation = boto3.client("cloudformation", region_name="us-east-1")
    sts = boto3.client("sts", region_name="us-east-1")

    class DeployedAccount:
        def client(self, service: str, **_: Any) -> Any:
            return {"cloudformation": cloudformation, "sts": sts}.get(service) or stack.client(service)

    connect = classmethod(lambda cls, name, **_: cls(name, DeployedAccount()))
    monkeypatch.setattr(AwsTarget, "connect", connect)
    commands = [
        ("trace", "evt-deployed-1"),
        ("user", "42"),
        ("suppression", "add", EMAIL, "--reason", "mailbox full"),
        ("suppression", "lift", EMAIL, "--why", "ticket 99"),
        ("suppression", "list", "--lifted"),
    ]
    with Stubber(cloudformation) as listed, Stubber(sts) as caller:
        for _ in commands:  # each command lists the stack's resources once
            listed.add_response(
                "list_stack_resources", {"StackResourceSummaries": summaries}, {"StackName": "herald-prod"}
            )
        for _ in range(2):  # add and lift name who did it
            caller.add_response(
                "get_caller_identity",
                {"UserId": "AIDA1", "Account": "123456789012", "Arn": "arn:aws:iam::123456789012:user/ops"},
            )
        out = [CliRunner().invoke(cli, [*command, "--stack-name", "herald-prod"]) for command in commands]
        listed.assert_no_pending_responses()
        caller.assert_no_pending_responses()

    assert all(result.exit_code == 0 for result in out), [result.output for result in out]
    trace, user, _, _, history = (result.output for result in out)
    assert f"notification {notification_id_for('evt-deployed-1')}  event evt-deployed-1  user 42" in trace
    assert "security_alert" in user
    assert "lifted by arn:aws:iam::123456789012:user/ops: ticket 99" in history


def test_an_unknown_notification_and_a_missing_stack_are_one_clear_line(
    stack: MotoStack, herald: Any, tmp_path: Path
) -> None:
    result = herald("trace", "evt-never-sent")
    assert result.exit_code == 1
    assert "no notification 'evt-never-sent'" in result.output
    no_stack = CliRunner().invoke(cli, ["user", "42", "--local", "--state-file", str(tmp_path / "none.json")])
    assert no_stack.exit_code == 1 and "make local" in no_stack.output
    neither = CliRunner().invoke(cli, ["user", "42"])
    assert neither.exit_code == 2 and "--stack-name NAME (AWS) or --local" in neither.output


def test_a_report_that_lands_while_an_entry_is_lifted_is_not_lifted_unseen(stack: MotoStack) -> None:
    client, table = stack.client("dynamodb"), stack.tables["SuppressionTable"]
    store = SuppressionStore(client, table)
    address = email_address(EMAIL)
    at = datetime(2026, 11, 30, 20, 0, tzinfo=UTC)  # both reports carry the same (second-resolution) time
    store.suppress(address, "unreachable", "twilio", now=at)

    class BounceArrivesMeanwhile:
        def __getattr__(self, name: str) -> Any:
            return getattr(client, name)

        def transact_write_items(self, **kwargs: Any) -> Any:
            store.suppress(address, "bounced", "ses", now=at)
            return client.transact_write_items(**kwargs)

    with pytest.raises(SuppressionChanged):
        SuppressionStore(BounceArrivesMeanwhile(), table).lift(address, by="agent", why="customer asked")

    assert store.is_suppressed(address)
    assert list(store.entries(lifted=True)) == []


def test_a_persons_own_opt_out_is_lifted_only_with_force(stack: MotoStack, herald: Any) -> None:
    store = SuppressionStore(stack.client("dynamodb"), stack.tables["SuppressionTable"])
    store.suppress(sms_address("+14155550100"), "opted_out", "twilio", contact="+14155550100")

    refused = herald("suppression", "lift", "+14155550100", "--why", "customer called")
    assert refused.exit_code == 1 and "replying START" in refused.output
    assert store.is_suppressed(sms_address("+14155550100"))

    forced = herald("suppression", "lift", "+14155550100", "--why", "written consent, ticket 99", "--force")
    assert forced.exit_code == 0, forced.output
    assert not store.is_suppressed(sms_address("+14155550100"))


def test_a_lift_starts_the_soft_bounce_count_over(stack: MotoStack, herald: Any) -> None:
    address = email_address(EMAIL)
    SoftBounces(stack.client("dynamodb"), stack.tables["RateCountersTable"]).add(
        address, "fb-1", datetime.now(UTC)
    )
    SuppressionStore(stack.client("dynamodb"), stack.tables["SuppressionTable"]).suppress(
        address, "soft_bounces", "ses", contact=EMAIL
    )
    counter = {"TableName": stack.tables["RateCountersTable"], "Key": to_attributes(soft_bounce_key(address))}
    assert "Item" in stack.client("dynamodb").get_item(**counter)

    assert herald("suppression", "lift", EMAIL, "--why", "mailbox fixed").exit_code == 0

    assert "Item" not in stack.client("dynamodb").get_item(**counter)


def test_an_exported_stack_name_does_not_outvote_local(
    stack: MotoStack, herald: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HERALD_STACK_NAME", "herald-prod")
    result = herald("user", "42")
    assert result.exit_code == 0, result.output
    assert "no notifications on record" in result.output


def test_a_held_request_from_before_decision_025_is_still_found(stack: MotoStack) -> None:
    client, table = stack.client("dynamodb"), stack.tables["NotificationsTable"]
    held = HeldRequests(client, table, timedelta(days=1))
    body = IngestEnvelope.model_validate_json(envelope_body("evt-held", "order_shipped"))
    client.put_item(
        TableName=table,
        Item=to_attributes(
            {"user_id": "#held#send-at-1", "notification_id": LEGACY_SORT_KEY, "held_request": body.body()}
        ),
    )
    found = held.get("send-at-1")
    assert found is not None and found.request.event_id == "evt-held"


def test_send_puts_a_producers_event_on_the_bus_and_prints_its_id(stack: MotoStack, herald: Any) -> None:
    data = json.dumps(load_catalog().types["order_shipped"].sample_data)

    result = herald("send", "order_shipped", "--user", "42", "--data", data, "--event-id", "ops-resend-1")

    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[-1] == "event manual-ops-resend-1"
    [message] = stack.drain("Ingest")
    event = json.loads(message["Body"])
    assert (event["source"], event["detail"]["user_id"], event["detail"]["event_id"]) == (
        "herald.manual",
        "42",
        "manual-ops-resend-1",
    )


def test_send_names_its_recipients_once_and_the_catalog_checks_it(stack: MotoStack, herald: Any) -> None:
    assert herald("send", "order_shipped").exit_code == 2
    assert herald("send", "order_shipped", "--user", "42", "--all").exit_code == 2
    refused = herald("send", "order_shipped", "--role", "admin", "--data", "{}")
    assert refused.exit_code == 1 and "requires data fields" in refused.output
    held = herald(
        "send",
        "security_alert",
        "--all",
        "--data",
        json.dumps(load_catalog().types["security_alert"].sample_data),
        "--send-at",
        "2031-01-01T09:00:00+00:00",
        "--wait",
    )
    assert held.exit_code == 0 and "not waiting: it is held until 2031-01-01" in held.output
    [message] = stack.drain("Ingest")
    assert json.loads(message["Body"])["detail"]["audience"] == {"all": True}


def schedule_manager(stack: MotoStack) -> ScheduleManager:
    """The recurring group as the stack's schedules function sees it (its environment)."""
    environment = json.loads(stack.description.to_json())["functions"]["SchedulesFunction"]["environment"]
    settings = load(SchedulesSettings, environment)
    return ScheduleManager(
        stack.client("scheduler"), group=settings.group, bus_arn=settings.bus_arn, role_arn=settings.role_arn
    )


def test_schedule_put_and_delete_leave_the_files_schedules_alone_unless_forced(
    stack: MotoStack, herald: Any
) -> None:
    data = json.dumps(load_catalog().types["order_shipped"].sample_data)

    def put(name: str, *extra: str) -> Result:
        return herald(
            "schedule", "put", name, "--expression", "cron(0 9 * * ? *)", "--timezone", "Europe/Lisbon",
            "--type", "order_shipped", "--role", "admin", "--data", data, *extra,
        )  # fmt: skip

    # GIVEN one schedule an operator made and one schedules.yaml made (as a deploy writes it)
    assert put("ops-weekly").exit_code == 0
    assert put("file-weekly").exit_code == 0
    manager = schedule_manager(stack)
    [file_weekly] = [s for s in manager.list() if s["Name"] == "file-weekly"]
    kept = ("Name", "GroupName", "ScheduleExpression", "FlexibleTimeWindow", "Target")
    stack.client("scheduler").update_schedule(**{k: file_weekly[k] for k in kept}, Description=FILE_OWNER)

    # WHEN an operator changes or deletes the file's schedule without --force THEN nothing changes
    refused = put("file-weekly")
    assert refused.exit_code == 1 and "schedules.yaml's" in refused.output
    refused = herald("schedule", "delete", "file-weekly")
    assert refused.exit_code == 1 and "schedules.yaml's" in refused.output
    assert manager.owner("file-weekly") == FILE_OWNER
    # ... while the operator's own is theirs to change and delete
    assert herald("schedule", "delete", "ops-weekly").exit_code == 0
    assert manager.owner("ops-weekly") is None

    # WHEN forced THEN the schedule becomes the operator's, and may be deleted
    taken = put("file-weekly", "--force")
    assert taken.exit_code == 0, taken.output
    assert manager.owner("file-weekly") == "herald:cli:local:support-agent-7"
    assert herald("schedule", "delete", "file-weekly").exit_code == 0
    assert herald("schedule", "list").output.strip() == "no recurring schedules"
