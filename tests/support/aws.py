"""AWS resources for moto-backed tests, created from template.yaml's own definitions."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

from cfnlint.decode.cfn_yaml import load as load_cfn_yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = REPO_ROOT / "template.yaml"

_TABLE_KEYS = ("KeySchema", "AttributeDefinitions", "GlobalSecondaryIndexes", "LocalSecondaryIndexes")


@cache
def template() -> dict[str, Any]:
    return load_cfn_yaml(str(TEMPLATE))


def table_definitions() -> dict[str, dict[str, Any]]:
    """Every AWS::DynamoDB::Table of the template, by logical id, reduced to what CreateTable takes."""
    definitions = {}
    for logical_id, resource in template()["Resources"].items():
        if resource["Type"] != "AWS::DynamoDB::Table":
            continue
        props = resource["Properties"]
        definition: dict[str, Any] = {k: _plain(props[k]) for k in _TABLE_KEYS if k in props}
        definition["BillingMode"] = "PAY_PER_REQUEST"
        if "GlobalSecondaryIndexes" in definition:  # a conditional (Fn::If) one is off by default
            definition["GlobalSecondaryIndexes"] = [
                i for i in definition["GlobalSecondaryIndexes"] if "IndexName" in i
            ]
        for index in definition.get("GlobalSecondaryIndexes", []):
            index.pop("ProvisionedThroughput", None)
        definitions[logical_id] = definition
    return definitions


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, str):
        return str(value)
    return value


def create_tables_from_template(dynamodb_client: Any, prefix: str = "") -> dict[str, str]:
    """Create every table of the template; returns logical id → table name (`prefix + logical id`)."""
    names = {}
    for logical_id, definition in table_definitions().items():
        name = f"{prefix}{logical_id}"
        dynamodb_client.create_table(TableName=name, **definition)
        names[logical_id] = name
    return names
