"""Translate Herald's SAM template to plain CloudFormation, offline.

This is what the ``AWS::Serverless-2016-10-31`` transform does in CloudFormation, run locally with
``samtranslator`` and no AWS calls:

- local ``CodeUri`` / ``ContentUri`` paths become ``s3://`` placeholders (their contents do not
  matter to the translation);
- a state machine's local ``DefinitionUri`` is inlined as ``Definition`` (so the result carries the
  ASL and linters can check it), an API's local ``DefinitionUri`` as ``DefinitionBody``;
- managed policies named in ``Policies`` are resolved by a stub instead of IAM.

Used by tests/infra (cfn-lint and IAM checks on the translated template) and reusable by the local
stack, which provisions the translated resources itself.

    from tools.sam_translate import translate_template
    cfn = translate_template("template.yaml")
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import boto3
import yaml
from samtranslator.parser.parser import Parser
from samtranslator.translator.translator import Translator

from tools.cfn_yaml import load_template

PLACEHOLDER_BUCKET = "herald-sam-translate-placeholder"

# AWS managed policies that live under a path other than /; everything else maps to
# arn:<partition>:iam::aws:policy/<name>.
_SERVICE_ROLE_POLICIES = {
    "AWSLambdaBasicExecutionRole",
    "AWSLambdaSQSQueueExecutionRole",
    "AWSLambdaVPCAccessExecutionRole",
    "AWSLambdaDynamoDBExecutionRole",
    "AWSLambdaKinesisExecutionRole",
    "AWSLambdaRole",
}

_SERVERLESS_WITH_POLICIES = ("AWS::Serverless::Function", "AWS::Serverless::StateMachine")


def _is_local(value: Any) -> bool:
    return isinstance(value, str) and not value.startswith(("s3://", "https://", "http://"))


def _placeholder(value: str) -> str:
    return f"s3://{PLACEHOLDER_BUCKET}/{value.strip('/') or 'root'}"


def _load_document(path: Path) -> Any:
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".json":
        return json.loads(text)
    return yaml.safe_load(text)


def _localise(template: dict[str, Any], base: Path, inline_definitions: bool) -> None:
    """Replace local artefact paths in ``template`` in place (see module docstring)."""
    globals_fn = template.get("Globals", {}).get("Function", {})
    if _is_local(globals_fn.get("CodeUri")):
        globals_fn["CodeUri"] = _placeholder(globals_fn["CodeUri"])

    for resource in template.get("Resources", {}).values():
        rtype = resource.get("Type")
        props = resource.get("Properties") or {}
        if rtype == "AWS::Serverless::Function" and _is_local(props.get("CodeUri")):
            props["CodeUri"] = _placeholder(props["CodeUri"])
        elif rtype == "AWS::Serverless::LayerVersion" and _is_local(props.get("ContentUri")):
            props["ContentUri"] = _placeholder(props["ContentUri"])
        elif rtype == "AWS::Serverless::StateMachine" and _is_local(props.get("DefinitionUri")):
            if inline_definitions:
                props["Definition"] = _load_document(base / props.pop("DefinitionUri"))
            else:
                props["DefinitionUri"] = _placeholder(props["DefinitionUri"])
        elif rtype in ("AWS::Serverless::Api", "AWS::Serverless::HttpApi") and _is_local(
            props.get("DefinitionUri")
        ):
            if inline_definitions:
                props["DefinitionBody"] = _load_document(base / props.pop("DefinitionUri"))
            else:
                props["DefinitionUri"] = _placeholder(props["DefinitionUri"])


def _managed_policy_names(template: dict[str, Any]) -> set[str]:
    """Names (not ARNs, not policy templates or inline documents) listed in any ``Policies``."""
    names: set[str] = set()
    sources = [template.get("Globals", {}).get("Function", {})]
    sources += [
        r.get("Properties") or {}
        for r in template.get("Resources", {}).values()
        if r.get("Type") in _SERVERLESS_WITH_POLICIES
    ]
    for props in sources:
        policies = props.get("Policies")
        if isinstance(policies, str):
            policies = [policies]
        for policy in policies or []:
            if isinstance(policy, str) and not policy.startswith("arn:"):
                names.add(policy)
    return names


def managed_policy_map(names: set[str], partition: str = "aws") -> dict[str, str]:
    """Stub of samtranslator's ManagedPolicyLoader.load(): name -> ARN, without calling IAM."""
    prefix = f"arn:{partition}:iam::aws:policy/"
    return {
        name: prefix + ("service-role/" if name in _SERVICE_ROLE_POLICIES else "") + name for name in names
    }


def translate_template(
    path: str | Path,
    *,
    parameter_values: dict[str, Any] | None = None,
    region: str = "us-east-1",
    inline_definitions: bool = True,
) -> dict[str, Any]:
    """Return the CloudFormation template the SAM transform makes of the template at ``path``.

    ``parameter_values`` override parameter defaults where the transform resolves them (it leaves
    most ``Ref``s to parameters in place). ``region`` only feeds the pseudo parameters the
    transform needs (``AWS::Region``, ``AWS::Partition``); no AWS call is made.
    """
    path = Path(path)
    template = copy.deepcopy(load_template(path))
    _localise(template, path.parent, inline_definitions)

    policy_map = managed_policy_map(
        _managed_policy_names(template), "aws-cn" if region.startswith("cn-") else "aws"
    )
    translator = Translator(None, Parser(), boto_session=boto3.Session(region_name=region))
    translated = translator.translate(
        template,
        parameter_values=dict(parameter_values or {}),
        get_managed_policy_map=lambda: policy_map,
    )
    return json.loads(json.dumps(translated))


def main() -> None:  # pragma: no cover - convenience CLI
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("template", nargs="?", default="template.yaml")
    parser.add_argument("-o", "--output", help="write JSON here instead of stdout")
    args = parser.parse_args()
    text = json.dumps(translate_template(args.template), indent=2, sort_keys=False) + "\n"
    if args.output:
        Path(args.output).write_text(text, encoding="utf-8")
    else:
        print(text, end="")


if __name__ == "__main__":  # pragma: no cover
    main()
