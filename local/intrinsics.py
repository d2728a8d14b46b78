"""CloudFormation intrinsic functions, conditions and resource ordering, as pure functions.

The local stack resolves the SAM-translated template itself (moto's CloudFormation drops too much
of it, see ../shared/PLATFORM.md). Everything here works on plain JSON-like values and a `Context`
that says what parameters, conditions, mappings and already provisioned resources resolve to:

    ctx = Context(parameters={"Stage": "dev"}, pseudo=pseudo_parameters("us-east-1", "123456789012",
                  "herald-local"), resources={"Queue": PhysicalResource(...)})
    resolve({"Fn::Sub": "herald-${Stage}"}, ctx)            # "herald-dev"
    resource_order(template["Resources"])                   # creation order (Ref/GetAtt/DependsOn)

Supported: Ref (parameters, pseudo parameters, resources), Fn::GetAtt, Fn::Sub (both forms),
Fn::Join, Fn::Select, Fn::Split, Fn::If, Fn::Equals, Fn::Not, Fn::And, Fn::Or, Condition (inside
conditions), Fn::FindInMap (with DefaultValue), Fn::ToJsonString, Fn::Length, Fn::Base64,
Fn::GetAZs. Anything else raises `IntrinsicError`.
"""

from __future__ import annotations

import base64
import heapq
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from local.model import PhysicalResource


class IntrinsicError(ValueError):
    """A template value that cannot be resolved (unknown name, bad arguments, unsupported)."""


class _NoValue:
    """`Ref: AWS::NoValue`: the property (or list item) is removed."""

    _instance: _NoValue | None = None

    def __new__(cls) -> _NoValue:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "NO_VALUE"

    def __bool__(self) -> bool:
        return False


NO_VALUE: Any = _NoValue()

PSEUDO_PARAMETERS = (
    "AWS::AccountId",
    "AWS::NotificationARNs",
    "AWS::NoValue",
    "AWS::Partition",
    "AWS::Region",
    "AWS::StackId",
    "AWS::StackName",
    "AWS::URLSuffix",
)

FUNCTIONS = (
    "Ref",
    "Fn::GetAtt",
    "Fn::Sub",
    "Fn::Join",
    "Fn::Select",
    "Fn::Split",
    "Fn::If",
    "Fn::Equals",
    "Fn::Not",
    "Fn::And",
    "Fn::Or",
    "Fn::FindInMap",
    "Fn::ToJsonString",
    "Fn::Length",
    "Fn::Base64",
    "Fn::GetAZs",
    "Fn::ImportValue",
    "Fn::Cidr",
    "Fn::Transform",
)

_SUB_VARIABLE = re.compile(r"\$\{([^}]*)\}")


def partition_for(region: str) -> str:
    if region.startswith("cn-"):
        return "aws-cn"
    if region.startswith("us-gov-"):
        return "aws-us-gov"
    return "aws"


def pseudo_parameters(
    region: str,
    account_id: str,
    stack_name: str,
    *,
    stack_id: str | None = None,
) -> dict[str, Any]:
    """The values of CloudFormation's pseudo parameters for a stack (AWS::NoValue excepted)."""
    partition = partition_for(region)
    return {
        "AWS::AccountId": account_id,
        "AWS::NotificationARNs": [],
        "AWS::Partition": partition,
        "AWS::Region": region,
        "AWS::StackId": stack_id
        or f"arn:{partition}:cloudformation:{region}:{account_id}:stack/{stack_name}/local",
        "AWS::StackName": stack_name,
        "AWS::URLSuffix": "amazonaws.com.cn" if partition == "aws-cn" else "amazonaws.com",
    }


@dataclass
class Context:
    """What names resolve to. `parameters` hold final values: str, or list[str] for list types."""

    parameters: Mapping[str, Any] = field(default_factory=dict)
    pseudo: Mapping[str, Any] = field(default_factory=dict)
    resources: Mapping[str, PhysicalResource] = field(default_factory=dict)
    conditions: Mapping[str, Any] = field(default_factory=dict)  # the template's Conditions section
    mappings: Mapping[str, Any] = field(default_factory=dict)
    _evaluated: dict[str, bool] = field(default_factory=dict, repr=False)
    _evaluating: set[str] = field(default_factory=set, repr=False)

    @property
    def region(self) -> str:
        return str(self.pseudo.get("AWS::Region", "us-east-1"))

    def ref(self, name: str) -> Any:
        if name == "AWS::NoValue":
            return NO_VALUE
        if name in self.pseudo:
            return self.pseudo[name]
        if name in self.parameters:
            return self.parameters[name]
        if name in self.resources:
            return self.resources[name].physical_id
        raise IntrinsicError(f"Ref to {name!r}: not a parameter, pseudo parameter or provisioned resource")

    def get_att(self, name: str, attribute: str) -> Any:
        resource = self.resources.get(name)
        if resource is None:
            raise IntrinsicError(f"Fn::GetAtt {name}.{attribute}: {name!r} is not a provisioned resource")
        if attribute not in resource.attributes:
            known = ", ".join(sorted(resource.attributes)) or "none"
            raise IntrinsicError(
                f"Fn::GetAtt {name}.{attribute}: {resource.type} {name} has no attribute "
                f"{attribute!r} locally (known: {known})"
            )
        return resource.attributes[attribute]

    def condition(self, name: str) -> bool:
        if name in self._evaluated:
            return self._evaluated[name]
        if name not in self.conditions:
            raise IntrinsicError(f"unknown condition {name!r}")
        if name in self._evaluating:
            raise IntrinsicError(f"condition {name!r} refers to itself")
        self._evaluating.add(name)
        try:
            value = evaluate_condition(self.conditions[name], self)
        finally:
            self._evaluating.discard(name)
        self._evaluated[name] = value
        return value


# -- resolution --------------------------------------------------------------------------------


def intrinsic_name(value: Any) -> str | None:
    """The intrinsic function a value is (`{"Fn::Sub": ...}` -> "Fn::Sub"), else None."""
    if isinstance(value, dict) and len(value) == 1:
        (key,) = value
        if key in FUNCTIONS:
            return key
    return None


def resolve(value: Any, ctx: Context) -> Any:
    """`value` with every intrinsic function replaced by its value (recursively).

    `Ref: AWS::NoValue` removes the dictionary key or list item it stands in; at the top level it
    is returned as `NO_VALUE`.
    """
    name = intrinsic_name(value)
    if name is not None:
        return _FUNCTIONS[name](value[name], ctx)
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            resolved = resolve(item, ctx)
            if resolved is not NO_VALUE:
                out[key] = resolved
        return out
    if isinstance(value, list):
        return [item for item in (resolve(v, ctx) for v in value) if item is not NO_VALUE]
    return value


def evaluate_condition(value: Any, ctx: Context) -> bool:
    """A condition expression (Fn::Equals/Not/And/Or, Condition, or a literal boolean)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    if isinstance(value, dict) and len(value) == 1 and "Condition" in value:
        return ctx.condition(_expect_str(value["Condition"], "Condition"))
    name = intrinsic_name(value)
    if name in ("Fn::Equals", "Fn::Not", "Fn::And", "Fn::Or"):
        return bool(_FUNCTIONS[name](value[name], ctx))
    raise IntrinsicError(f"not a condition expression: {value!r}")


def scalar_string(value: Any, where: str) -> str:
    """A resolved scalar as CloudFormation stringifies it (booleans lower case)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float | str):
        return str(value)
    raise IntrinsicError(f"{where}: expected a string, got {value!r}")


def _expect_str(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise IntrinsicError(f"{where}: expected a string, got {value!r}")
    return value


def _expect_list(value: Any, where: str, length: int | None = None) -> list[Any]:
    if not isinstance(value, list) or (length is not None and len(value) != length):
        size = f" of {length}" if length is not None else ""
        raise IntrinsicError(f"{where}: expected a list{size}, got {value!r}")
    return value


def _ref(arg: Any, ctx: Context) -> Any:
    return ctx.ref(_expect_str(resolve(arg, ctx), "Ref"))


def _split_get_att(arg: Any, ctx: Context) -> tuple[str, str]:
    if isinstance(arg, str):
        if "." not in arg:
            raise IntrinsicError(f"Fn::GetAtt: expected 'Resource.Attribute', got {arg!r}")
        name, attribute = arg.split(".", 1)
        return name, attribute
    items = _expect_list(arg, "Fn::GetAtt", 2)
    return _expect_str(items[0], "Fn::GetAtt"), _expect_str(resolve(items[1], ctx), "Fn::GetAtt")


def _get_att(arg: Any, ctx: Context) -> Any:
    return ctx.get_att(*_split_get_att(arg, ctx))


def _sub(arg: Any, ctx: Context) -> str:
    if isinstance(arg, str):
        template, variables = arg, {}
    else:
        items = _expect_list(arg, "Fn::Sub", 2)
        template = _expect_str(items[0], "Fn::Sub")
        if not isinstance(items[1], dict):
            raise IntrinsicError(f"Fn::Sub: variables must be a map, got {items[1]!r}")
        variables = {key: resolve(val, ctx) for key, val in items[1].items()}

    def replace(match: re.Match[str]) -> str:
        expression = match.group(1)
        if expression.startswith("!"):
            return "${" + expression[1:] + "}"
        expression = expression.strip()
        if expression in variables:
            value = variables[expression]
        elif "." in expression:
            value = ctx.get_att(*expression.split(".", 1))
        else:
            value = ctx.ref(expression)
        if value is NO_VALUE:
            raise IntrinsicError(f"Fn::Sub: ${{{expression}}} is AWS::NoValue")
        return scalar_string(value, f"Fn::Sub ${{{expression}}}")

    return _SUB_VARIABLE.sub(replace, template)


def _join(arg: Any, ctx: Context) -> str:
    items = _expect_list(arg, "Fn::Join", 2)
    delimiter = _expect_str(items[0], "Fn::Join delimiter")
    values = _expect_list(resolve(items[1], ctx), "Fn::Join values")
    return delimiter.join(scalar_string(v, "Fn::Join") for v in values)


def _select(arg: Any, ctx: Context) -> Any:
    items = _expect_list(arg, "Fn::Select", 2)
    index_value = resolve(items[0], ctx)
    try:
        index = int(index_value)
    except (TypeError, ValueError):
        raise IntrinsicError(f"Fn::Select: bad index {index_value!r}") from None
    values = _expect_list(resolve(items[1], ctx), "Fn::Select values")
    if not 0 <= index < len(values):
        raise IntrinsicError(f"Fn::Select: index {index} out of range for {values!r}")
    return values[index]


def _split(arg: Any, ctx: Context) -> list[str]:
    items = _expect_list(arg, "Fn::Split", 2)
    delimiter = _expect_str(items[0], "Fn::Split delimiter")
    return _expect_str(resolve(items[1], ctx), "Fn::Split source").split(delimiter)


def _if(arg: Any, ctx: Context) -> Any:
    items = _expect_list(arg, "Fn::If", 3)
    chosen = items[1] if ctx.condition(_expect_str(items[0], "Fn::If condition")) else items[2]
    return resolve(chosen, ctx)


def _comparable(value: Any) -> Any:
    if isinstance(value, list):
        return [_comparable(v) for v in value]
    if isinstance(value, bool | int | float):
        return scalar_string(value, "Fn::Equals")
    return value


def _equals(arg: Any, ctx: Context) -> bool:
    items = _expect_list(arg, "Fn::Equals", 2)
    return _comparable(resolve(items[0], ctx)) == _comparable(resolve(items[1], ctx))


def _not(arg: Any, ctx: Context) -> bool:
    items = _expect_list(arg, "Fn::Not", 1)
    return not evaluate_condition(items[0], ctx)


def _and(arg: Any, ctx: Context) -> bool:
    items = _expect_list(arg, "Fn::And")
    if not 2 <= len(items) <= 10:
        raise IntrinsicError("Fn::And takes 2 to 10 conditions")
    return all(evaluate_condition(item, ctx) for item in items)


def _or(arg: Any, ctx: Context) -> bool:
    items = _expect_list(arg, "Fn::Or")
    if not 2 <= len(items) <= 10:
        raise IntrinsicError("Fn::Or takes 2 to 10 conditions")
    return any(evaluate_condition(item, ctx) for item in items)


def _find_in_map(arg: Any, ctx: Context) -> Any:
    items = _expect_list(arg, "Fn::FindInMap")
    if len(items) not in (3, 4):
        raise IntrinsicError(f"Fn::FindInMap: expected 3 keys (+ DefaultValue), got {items!r}")
    keys = [scalar_string(resolve(item, ctx), "Fn::FindInMap") for item in items[:3]]
    default: Any = NO_VALUE
    if len(items) == 4:
        if not isinstance(items[3], dict) or "DefaultValue" not in items[3]:
            raise IntrinsicError("Fn::FindInMap: the fourth argument must be {DefaultValue: ...}")
        default = resolve(items[3]["DefaultValue"], ctx)
    try:
        return ctx.mappings[keys[0]][keys[1]][keys[2]]
    except (KeyError, TypeError):
        if default is not NO_VALUE:
            return default
        raise IntrinsicError(f"Fn::FindInMap: no {keys[0]}/{keys[1]}/{keys[2]}") from None


def _to_json_string(arg: Any, ctx: Context) -> str:
    return json.dumps(resolve(arg, ctx), separators=(",", ":"))


def _length(arg: Any, ctx: Context) -> int:
    return len(_expect_list(resolve(arg, ctx), "Fn::Length"))


def _base64(arg: Any, ctx: Context) -> str:
    return base64.b64encode(_expect_str(resolve(arg, ctx), "Fn::Base64").encode()).decode()


def _get_azs(arg: Any, ctx: Context) -> list[str]:
    region = resolve(arg, ctx) or ctx.region
    return [f"{region}{zone}" for zone in "abc"]


def _unsupported(name: str) -> Any:
    def fail(arg: Any, ctx: Context) -> Any:
        raise IntrinsicError(f"{name} is not supported by the local stack")

    return fail


_FUNCTIONS: dict[str, Any] = {
    "Ref": _ref,
    "Fn::GetAtt": _get_att,
    "Fn::Sub": _sub,
    "Fn::Join": _join,
    "Fn::Select": _select,
    "Fn::Split": _split,
    "Fn::If": _if,
    "Fn::Equals": _equals,
    "Fn::Not": _not,
    "Fn::And": _and,
    "Fn::Or": _or,
    "Fn::FindInMap": _find_in_map,
    "Fn::ToJsonString": _to_json_string,
    "Fn::Length": _length,
    "Fn::Base64": _base64,
    "Fn::GetAZs": _get_azs,
    "Fn::ImportValue": _unsupported("Fn::ImportValue"),
    "Fn::Cidr": _unsupported("Fn::Cidr"),
    "Fn::Transform": _unsupported("Fn::Transform"),
}


# -- dependencies ------------------------------------------------------------------------------


def references(value: Any) -> set[str]:
    """Every name a value refers to through Ref, Fn::GetAtt or Fn::Sub (parameters included)."""
    found: set[str] = set()
    _collect(value, found)
    return found


def _collect(value: Any, found: set[str]) -> None:
    name = intrinsic_name(value)
    if name == "Ref":
        if isinstance(value["Ref"], str):
            found.add(value["Ref"])
        else:
            _collect(value["Ref"], found)
        return
    if name == "Fn::GetAtt":
        arg = value["Fn::GetAtt"]
        if isinstance(arg, str):
            found.add(arg.split(".", 1)[0])
        elif isinstance(arg, list) and arg and isinstance(arg[0], str):
            found.add(arg[0])
            for item in arg[1:]:
                _collect(item, found)
        return
    if name == "Fn::Sub":
        arg = value["Fn::Sub"]
        template, variables = (arg, {}) if isinstance(arg, str) else (arg[0], arg[1])
        if isinstance(template, str):
            for expression in _SUB_VARIABLE.findall(template):
                expression = expression.strip()
                if expression.startswith("!") or expression in variables:
                    continue
                found.add(expression.split(".", 1)[0])
        _collect(variables, found)
        return
    if isinstance(value, dict):
        for item in value.values():
            _collect(item, found)
    elif isinstance(value, list):
        for item in value:
            _collect(item, found)


def resource_dependencies(resources: Mapping[str, Any]) -> dict[str, set[str]]:
    """Logical id -> the other resources it needs first (Ref, Fn::GetAtt, Fn::Sub, DependsOn)."""
    graph: dict[str, set[str]] = {}
    for logical_id, resource in resources.items():
        needs = {name for name in references(resource.get("Properties", {})) if name in resources}
        depends_on = resource.get("DependsOn", [])
        if isinstance(depends_on, str):
            depends_on = [depends_on]
        for name in depends_on:
            if name not in resources:
                raise IntrinsicError(f"{logical_id} DependsOn unknown resource {name!r}")
            needs.add(name)
        needs.discard(logical_id)
        graph[logical_id] = needs
    return graph


def resource_order(resources: Mapping[str, Any]) -> list[str]:
    """Logical ids in an order where every resource comes after those it depends on.

    Deterministic (ties broken by logical id); a dependency cycle raises `IntrinsicError`.
    """
    graph = resource_dependencies(resources)
    dependents: dict[str, set[str]] = {name: set() for name in graph}
    waiting = {name: len(needs) for name, needs in graph.items()}
    for name, needs in graph.items():
        for need in needs:
            dependents[need].add(name)
    ready = [name for name, count in waiting.items() if count == 0]
    heapq.heapify(ready)
    order: list[str] = []
    while ready:
        name = heapq.heappop(ready)
        order.append(name)
        for dependent in dependents[name]:
            waiting[dependent] -= 1
            if waiting[dependent] == 0:
                heapq.heappush(ready, dependent)
    if len(order) != len(graph):
        stuck = sorted(name for name, count in waiting.items() if count > 0)
        raise IntrinsicError(f"circular dependency between resources: {', '.join(stuck)}")
    return order
