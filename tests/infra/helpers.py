"""Small readers of CloudFormation structures shared by the infra tests."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any


def resources_of(template: dict[str, Any], rtype: str) -> dict[str, dict[str, Any]]:
    return {lid: r for lid, r in template.get("Resources", {}).items() if r.get("Type") == rtype}


def props(resource: dict[str, Any]) -> dict[str, Any]:
    return resource.get("Properties") or {}


def target_id(value: Any) -> str | None:
    """The logical id behind `{"Ref": X}` or `{"Fn::GetAtt": [X, ...]}` / `"X.Attr"`, else None."""
    if isinstance(value, dict) and len(value) == 1:
        if "Ref" in value:
            return value["Ref"]
        if "Fn::GetAtt" in value:
            att = value["Fn::GetAtt"]
            return att[0] if isinstance(att, list) else str(att).split(".", 1)[0]
    return None


def walk(node: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    """Every (path, node) under `node`, depth first."""
    yield path, node
    if isinstance(node, dict):
        for key, value in node.items():
            yield from walk(value, f"{path}.{key}" if path else str(key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from walk(value, f"{path}[{index}]")


def as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def policy_statements(template: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every IAM policy statement in the template (role policies, trust policies, managed and
    inline policies, resource policies such as queue policies), with where it is."""
    for logical_id, resource in template.get("Resources", {}).items():
        for path, node in walk(resource.get("Properties") or {}):
            if (
                isinstance(node, dict)
                and node.get("Effect") in ("Allow", "Deny")
                and ("Action" in node or "NotAction" in node)
            ):
                yield f"{logical_id}.{path}", node
