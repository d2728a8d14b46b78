"""The stack a `herald` command works on: a deployed one, found by its CloudFormation stack name, or
the local stack (`make local`), described by the `.local/stack.json` it writes.

Both answer the same three questions: an AWS client, the physical id of one of the template's
resources (a table's name, a queue's URL), and a function's environment (the router's settings, so
`herald explain` decides with the deployed configuration, not a guess).
"""

from __future__ import annotations

import getpass
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

DEFAULT_STATE_FILE = Path(".local") / "stack.json"
# The local stack's moto server accepts any credentials; a developer's profile must not be used.
LOCAL_CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
CLIENT_CONFIG = Config(retries={"max_attempts": 3, "mode": "standard"})


class TargetError(Exception):
    """Something an operator must fix: an unknown stack, a resource it does not have, ..."""


class StackTarget(Protocol):
    """What every command needs from a stack."""

    @property
    def label(self) -> str: ...

    def client(self, service: str) -> Any: ...

    def physical_id(self, logical_id: str) -> str: ...

    def function_environment(self, logical_id: str) -> dict[str, str]: ...

    def operator(self) -> str:
        """Who runs the command, for the records it writes (lifting a suppression)."""
        ...


@dataclass
class LocalTarget:
    aws_endpoint: str
    region: str
    resources: dict[str, str]  # logical id -> physical id
    resource_types: dict[str, str]
    environments: dict[str, dict[str, str]]  # function logical id -> environment
    label: str = "the local stack"

    @classmethod
    def read(cls, path: Path) -> LocalTarget:
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
            resources: Mapping[str, Any] = raw.get("resources") or {}
            return cls(
                aws_endpoint=str(raw["aws_endpoint"]),
                region=str(raw.get("region") or "us-east-1"),
                resources={k: str(v["physical_id"]) for k, v in resources.items()},
                resource_types={k: str(v.get("type", "")) for k, v in resources.items()},
                environments={
                    k: {str(n): str(v) for n, v in (f.get("environment") or {}).items()}
                    for k, f in (raw.get("functions") or {}).items()
                },
                label=f"the local stack ({path})",
            )
        except FileNotFoundError as error:
            raise TargetError(f"{path} not found: is the local stack running (`make local`)?") from error
        except (ValueError, KeyError, TypeError, AttributeError) as error:
            raise TargetError(f"{path} is not the local stack's description: {error}") from error

    @property
    def queue_urls(self) -> dict[str, str]:
        return {k: v for k, v in self.resources.items() if self.resource_types.get(k) == "AWS::SQS::Queue"}

    def client(self, service: str) -> Any:
        session = boto3.session.Session(region_name=self.region, **LOCAL_CREDENTIALS)
        return session.client(service, endpoint_url=self.aws_endpoint, config=CLIENT_CONFIG)

    def physical_id(self, logical_id: str) -> str:
        if logical_id not in self.resources:
            raise TargetError(f"{self.label} has no {logical_id}")
        return self.resources[logical_id]

    def function_environment(self, logical_id: str) -> dict[str, str]:
        if logical_id not in self.environments:
            raise TargetError(f"{self.label} has no function {logical_id}")
        return self.environments[logical_id]

    def operator(self) -> str:
        return f"local:{getpass.getuser()}"


@dataclass
class AwsTarget:
    stack_name: str
    session: Any
    _resources: dict[str, str] | None = field(default=None, repr=False)

    @property
    def label(self) -> str:
        return f"stack {self.stack_name}"

    @classmethod
    def connect(cls, stack_name: str, region: str | None = None, profile: str | None = None) -> AwsTarget:
        return cls(stack_name, boto3.session.Session(region_name=region, profile_name=profile))

    def client(self, service: str) -> Any:
        return self.session.client(service, config=CLIENT_CONFIG)

    def physical_id(self, logical_id: str) -> str:
        if self._resources is None:
            self._resources = {}
            try:
                pages = self.client("cloudformation").get_paginator("list_stack_resources")
                for page in pages.paginate(StackName=self.stack_name):
                    for resource in page.get("StackResourceSummaries", []):
                        if resource.get("PhysicalResourceId"):
                            self._resources[resource["LogicalResourceId"]] = resource["PhysicalResourceId"]
            except ClientError as error:
                self._resources = None
                raise TargetError(f"stack {self.stack_name}: {error}") from error
        if logical_id not in self._resources:
            raise TargetError(f"stack {self.stack_name} has no {logical_id}")
        return self._resources[logical_id]

    def function_environment(self, logical_id: str) -> dict[str, str]:
        name = self.physical_id(logical_id)
        configuration = self.client("lambda").get_function_configuration(FunctionName=name)
        return dict((configuration.get("Environment") or {}).get("Variables") or {})

    def operator(self) -> str:
        return str(self.client("sts").get_caller_identity()["Arn"])
