"""What the provisioner learns from template.yaml and hands to the runner and the HTTP API.

The provisioner (local/provision.py) translates the template with samtranslator, creates every
resource it can in the moto server, and describes the result with these types; the runner
(local/runner.py) invokes the functions as Lambda would from `FunctionSpec`; `.local/stack.json`
is `StackDescription.to_json()`.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class QueueSource:
    """An `SQS` event of a function (an AWS::Lambda::EventSourceMapping after translation)."""

    queue_logical_id: str
    queue_url: str
    queue_arn: str
    batch_size: int = 10
    maximum_batching_window_seconds: int = 0
    report_batch_item_failures: bool = False
    maximum_concurrency: int | None = None


@dataclass(frozen=True)
class HttpRoute:
    """An `HttpApi` event of a function: `ANY /v1/me/{proxy+}` style paths, as in the template."""

    method: str
    path: str
    authorizer: str | None  # None: no JWT required (e.g. /v1/webhooks/*: the function checks signatures)
    api_logical_id: str
    # The route's AuthorizationScopes: the token's scope/scp must hold one of them (none: any token).
    authorization_scopes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class ScheduleSource:
    """A `Schedule` / `ScheduleV2` event (rate(...) or cron(...)), fired by the runner."""

    name: str
    expression: str
    input: str | None = None


@dataclass
class FunctionSpec:
    logical_id: str
    code_uri: str  # e.g. "functions/router/"
    module: str  # e.g. "functions.router.app"
    handler: str  # e.g. "lambda_handler"
    timeout_seconds: int
    memory_mb: int
    environment: dict[str, str]  # fully resolved, plus AWS_* for the local endpoint
    queue_sources: list[QueueSource] = field(default_factory=list)
    http_routes: list[HttpRoute] = field(default_factory=list)
    schedules: list[ScheduleSource] = field(default_factory=list)


@dataclass(frozen=True)
class JwtAuthorizer:
    name: str
    issuer: str
    audience: list[str]
    identity_source: str = "$request.header.Authorization"


@dataclass
class PhysicalResource:
    logical_id: str
    type: str
    physical_id: str  # what Ref returns
    attributes: dict[str, str] = field(default_factory=dict)  # what GetAtt returns (Arn, Name, ...)


@dataclass
class CustomResource:
    """A `Custom::*` resource: the function its ServiceToken names, and the properties it is sent."""

    logical_id: str
    type: str
    function: str  # the function's logical id
    properties: dict[str, Any]


@dataclass
class StackDescription:
    region: str
    aws_endpoint: str
    api_endpoint: str
    sandbox_endpoint: str
    parameters: dict[str, str]
    resources: dict[str, PhysicalResource] = field(default_factory=dict)
    functions: dict[str, FunctionSpec] = field(default_factory=dict)
    authorizers: dict[str, JwtAuthorizer] = field(default_factory=dict)
    outputs: dict[str, str] = field(default_factory=dict)
    not_emulated: dict[str, str] = field(default_factory=dict)  # logical id -> why
    # CloudFormation custom resources, run by the local stack once its functions are up
    custom_resources: dict[str, CustomResource] = field(default_factory=dict)
    # HttpApi logical id -> its CorsConfiguration, as the translated Body's `x-amazon-apigateway-cors`
    cors: dict[str, dict[str, Any]] = field(default_factory=dict)

    def ref(self, logical_id: str) -> str:
        return self.resources[logical_id].physical_id

    def attribute(self, logical_id: str, name: str) -> str:
        return self.resources[logical_id].attributes[name]

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    def write(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.to_json() + "\n", encoding="utf-8")

    @classmethod
    def from_json(cls, text: str) -> StackDescription:
        raw: dict[str, Any] = json.loads(text)
        functions = {}
        for key, spec in raw.pop("functions").items():
            spec["queue_sources"] = [QueueSource(**q) for q in spec["queue_sources"]]
            spec["http_routes"] = [HttpRoute(**r) for r in spec["http_routes"]]
            spec["schedules"] = [ScheduleSource(**s) for s in spec["schedules"]]
            functions[key] = FunctionSpec(**spec)
        resources = {k: PhysicalResource(**v) for k, v in raw.pop("resources").items()}
        authorizers = {k: JwtAuthorizer(**v) for k, v in raw.pop("authorizers").items()}
        custom = {k: CustomResource(**v) for k, v in raw.pop("custom_resources", {}).items()}
        return cls(
            **raw, resources=resources, functions=functions, authorizers=authorizers, custom_resources=custom
        )
