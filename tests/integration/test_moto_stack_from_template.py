"""The in-process moto stack of the handler tests (tests/support/stack.py) comes from template.yaml
through the local stack's provisioner: no second list of resources to keep in step."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from moto import mock_aws

from local.provision import ProvisionError
from local.provision import provision as provision_into_moto
from tests.support.aws import REPO_ROOT
from tests.support.stack import MOTO_CONFIG, provision
from tools.cfn_yaml import load_template

pytestmark = pytest.mark.integration

TEMPLATE = REPO_ROOT / "template.yaml"

# A queue pair and a variable that exist nowhere but in the copy of the template below.
AUDIT_RESOURCES = """Resources:
  AuditDeadLetterQueue:
    Type: AWS::SQS::Queue
  AuditQueue:
    Type: AWS::SQS::Queue
    Properties:
      RedrivePolicy:
        deadLetterTargetArn: !GetAtt AuditDeadLetterQueue.Arn
        maxReceiveCount: 3
"""


def template_with_an_audit_queue(folder: Path) -> Path:
    """template.yaml plus AuditQueue (with its DLQ) and AUDIT_QUEUE_URL for every function."""
    text = TEMPLATE.read_text()
    assert text.count("\nResources:\n") == 1 and text.count("    Environment:\n      Variables:\n") == 1
    text = text.replace("\nResources:\n", "\n" + AUDIT_RESOURCES, 1)
    text = text.replace(
        "    Environment:\n      Variables:\n",
        "    Environment:\n      Variables:\n        AUDIT_QUEUE_URL: !Ref AuditQueue\n",
        1,
    )
    shutil.copytree(REPO_ROOT / "statemachine", folder / "statemachine")  # DefinitionUri is relative
    copy = folder / "template.yaml"
    copy.write_text(text)
    return copy


def test_every_queue_table_state_machine_and_global_variable_of_the_template_is_there() -> None:
    resources = load_template(TEMPLATE)["Resources"]
    declared = {name: spec["Type"] for name, spec in resources.items()}
    variables = load_template(TEMPLATE)["Globals"]["Function"]["Environment"]["Variables"]

    with mock_aws(config=MOTO_CONFIG):
        stack = provision()

    queues = {name for name, rtype in declared.items() if rtype == "AWS::SQS::Queue"}
    provisioned = set(stack.queue_urls.values()) | set(stack.dlq_urls.values())
    assert provisioned == {stack.description.ref(name) for name in queues}
    assert set(stack.tables) == {name for name, rtype in declared.items() if rtype == "AWS::DynamoDB::Table"}
    assert set(stack.state_machines) == {
        name for name, rtype in declared.items() if rtype == "AWS::Serverless::StateMachine"
    }
    assert set(variables) <= set(stack.env)
    assert stack.env["USERS_TABLE"] == stack.tables["UsersTable"]
    assert stack.env["EMAIL_QUEUE_URL"] == stack.queue_urls["Email"]
    assert stack.env["EMAIL_DLQ_URL"] == stack.dlq_urls["Email"]


def test_a_queue_added_to_the_template_reaches_the_tests_with_no_other_change(tmp_path: Path) -> None:
    template = template_with_an_audit_queue(tmp_path)

    with mock_aws(config=MOTO_CONFIG):
        stack = provision(template)
        sqs = stack.client("sqs")
        sqs.send_message(QueueUrl=stack.env["AUDIT_QUEUE_URL"], MessageBody="hello")
        drained = stack.drain("Audit")

    assert stack.queue_urls["Audit"] == stack.env["AUDIT_QUEUE_URL"]
    assert stack.dlq_urls["Audit"] == stack.description.ref("AuditDeadLetterQueue")
    assert "AuditDeadLetter" not in stack.queue_urls  # a DLQ is listed as its queue's DLQ only
    assert [m["Body"] for m in drained] == ["hello"]


def test_the_functions_reach_moto_in_process_not_an_endpoint() -> None:
    with mock_aws(config=MOTO_CONFIG):
        stack = provision()
        router = stack.function_env("RouterFunction")

    for name in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        assert name not in stack.env
        assert name not in router
    assert router["AWS_LAMBDA_FUNCTION_NAME"] == stack.description.ref("RouterFunction")
    assert "AWS_LAMBDA_FUNCTION_NAME" not in stack.env  # per function: not in the shared mapping


def test_in_process_provisioning_refuses_to_run_outside_mock_aws() -> None:
    with pytest.raises(ProvisionError, match="mock_aws"):
        provision_into_moto(TEMPLATE, aws_endpoint=None)
