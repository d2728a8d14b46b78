"""What a function's cold start does not load (decision 031): each handler module is imported in a
fresh interpreter with the environment Lambda gives it during init (template.yaml's variables,
Tracing: Active, no trace header yet), and what only some invocations need must not be there yet."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.infra.lambda_environment import function_property, lambda_environment
from tests.support.aws import REPO_ROOT
from tools.cfn_yaml import load_template

pytestmark = pytest.mark.unit

TEMPLATE = load_template(REPO_ROOT / "template.yaml")
FUNCTIONS = sorted(
    logical_id
    for logical_id, resource in TEMPLATE["Resources"].items()
    if resource.get("Type") == "AWS::Serverless::Function"
)
# Loaded later by the invocations that need them, never at cold start.
EVERYWHERE = ("aws_xray_sdk",)  # the first sampled invocation (herald.tracing)
LATER = {
    # webhooks and Pusher auth, contact writes, the offline OpenAPI document
    "ApiFunction": (
        "pusher",
        "sendgrid",
        "email_validator",
        "phonenumbers",
        "aws_lambda_powertools.event_handler.openapi.models",
    ),
    "EmailSenderFunction": ("sendgrid",),  # SES is the template's default provider, SendGrid the failover
    "TwilioWebhookFunction": ("twilio",),  # the first webhook (decision 035)
}
PROBE = """
import importlib, json, sys
importlib.import_module(sys.argv[1])
print(json.dumps(sorted(sys.modules)))
"""


@pytest.mark.parametrize("logical_id", FUNCTIONS)
def test_a_cold_start_loads_nothing_its_first_invocation_may_not_need(
    logical_id: str, tmp_path: Path
) -> None:
    # GIVEN the function's environment on Lambda during init
    code = REPO_ROOT / str(function_property(TEMPLATE, logical_id, "CodeUri")).strip("/")
    handler_module = str(function_property(TEMPLATE, logical_id, "Handler")).rpartition(".")[0]
    module = ".".join((*code.relative_to(REPO_ROOT).parts, handler_module))
    environment = lambda_environment(
        TEMPLATE,
        logical_id,
        task_root=code,
        opt=tmp_path / "opt",
        runtime_dir=tmp_path,
        tracing_active=function_property(TEMPLATE, logical_id, "Tracing") == "Active",
    )
    environment.pop("_X_AMZN_TRACE_ID", None)  # the runtime sets it per invocation
    environment["PYTHONPATH"] = f"{REPO_ROOT}:{REPO_ROOT / 'layers' / 'herald'}"

    # WHEN a fresh interpreter imports its handler module
    done = subprocess.run(
        [sys.executable, "-c", PROBE, module],
        cwd=REPO_ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    # THEN it started, without the X-Ray SDK and without what only some invocations use
    assert done.returncode == 0, done.stderr[-3000:]
    loaded = set(json.loads(done.stdout.strip().splitlines()[-1]))
    unwanted = (*EVERYWHERE, *LATER.get(logical_id, ()))
    assert sorted(name for name in unwanted if name in loaded) == []
