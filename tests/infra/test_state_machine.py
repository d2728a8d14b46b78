"""statemachine/escalation.asl.json against the template and the escalation input contract."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest

from tests.infra.conftest import ASL_PATH
from tests.infra.helpers import props, target_id

pytestmark = pytest.mark.infra

PLACEHOLDER = re.compile(r"\$\{([^}]*)\}")
TERMINAL_TYPES = {"Succeed", "Fail", "Choice"}


@pytest.fixture(scope="module")
def asl(asl_text: str) -> dict[str, Any]:
    try:
        return json.loads(asl_text)
    except json.JSONDecodeError as exc:
        pytest.fail(f"{ASL_PATH} is not valid JSON ({exc}); keep substitutions inside strings")


@pytest.fixture(scope="module")
def sm_props(template: dict[str, Any]) -> dict[str, Any]:
    resource = template["Resources"].get("EscalationStateMachine")
    assert resource is not None, "template.yaml has no EscalationStateMachine"
    assert resource["Type"] == "AWS::Serverless::StateMachine"
    return props(resource)


def machines(definition: dict[str, Any], where: str = "top level") -> Iterator[tuple[str, dict[str, Any]]]:
    """The definition and every nested machine (Parallel branches, Map iterators)."""
    yield where, definition
    for name, state in definition.get("States", {}).items():
        for index, branch in enumerate(state.get("Branches", [])):
            yield from machines(branch, f"{name}.Branches[{index}]")
        for key in ("Iterator", "ItemProcessor"):
            if key in state:
                yield from machines(state[key], f"{name}.{key}")


def all_states(asl: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for where, machine in machines(asl):
        for name, state in machine.get("States", {}).items():
            yield where, name, state


def transitions(state: dict[str, Any]) -> list[str]:
    targets = [state["Next"]] if "Next" in state else []
    targets += [c["Next"] for c in state.get("Catch", [])]
    targets += [c["Next"] for c in state.get("Choices", []) if "Next" in c]
    if "Default" in state:
        targets.append(state["Default"])
    return targets


def test_definition_uri_is_the_asl_file(sm_props: dict[str, Any]) -> None:
    assert sm_props.get("DefinitionUri") == "statemachine/escalation.asl.json", (
        f"EscalationStateMachine.DefinitionUri is {sm_props.get('DefinitionUri')!r}"
    )
    assert sm_props.get("Type") == "STANDARD", "the escalation must be a STANDARD state machine"


def test_substitutions_match_placeholders(asl_text: str, sm_props: dict[str, Any]) -> None:
    used = set(PLACEHOLDER.findall(asl_text))
    defined = set(sm_props.get("DefinitionSubstitutions") or {})
    assert not used - defined, (
        f"placeholders in the ASL without a DefinitionSubstitutions key: {used - defined}"
    )
    assert not defined - used, f"DefinitionSubstitutions keys not used in the ASL: {defined - used}"


def test_callback_tasks_time_out_and_catch_the_timeout(asl: dict[str, Any]) -> None:
    callbacks = [
        (where, name, state)
        for where, name, state in all_states(asl)
        if state.get("Type") == "Task" and str(state.get("Resource", "")).endswith(".waitForTaskToken")
    ]
    assert callbacks, "the escalation has no .waitForTaskToken task"
    for where, name, state in callbacks:
        assert "TimeoutSeconds" in state or "TimeoutSecondsPath" in state, (
            f"{where}/{name} waits for a task token without TimeoutSeconds/TimeoutSecondsPath: "
            "a lost acknowledgement would block the execution for a year"
        )
        caught = {error for catcher in state.get("Catch", []) for error in catcher.get("ErrorEquals", [])}
        assert caught & {"States.Timeout", "States.ALL"}, (
            f"{where}/{name} does not Catch States.Timeout (the next step of the chain)"
        )


def test_the_chain_costs_one_transition_per_step_and_nothing_waits(asl: dict[str, Any]) -> None:
    """No Wait, Pass or Choice state (a deferred chain is started late instead): each state is a
    step of the chain, so an execution enters one state per step it sends."""
    from herald.catalog import MAX_CHAIN_STEPS

    states = asl["States"]
    assert {state["Type"] for state in states.values()} == {"Task"}
    assert len(states) == MAX_CHAIN_STEPS
    paths = re.findall(r'"(\$[^"]*)"', json.dumps(asl))
    assert paths and not [p for p in paths if "[" in p], (
        "no array index in a path: moto's interpreter reads `$.a[0].b` as a list, AWS as a scalar"
    )


def test_transitions_point_to_existing_states(asl: dict[str, Any]) -> None:
    for where, machine in machines(asl):
        states = machine.get("States", {})
        assert machine.get("StartAt") in states, f"{where}: StartAt {machine.get('StartAt')!r} is not a state"
        reachable, todo = set(), [machine["StartAt"]]
        for name, state in states.items():
            for target in transitions(state):
                assert target in states, f"{where}/{name} goes to {target!r}, which is not a state"
            if state.get("Type") not in TERMINAL_TYPES:
                assert ("Next" in state) != bool(state.get("End")), (
                    f"{where}/{name} must have exactly one of Next and End: true"
                )
        while todo:
            name = todo.pop()
            if name not in reachable:
                reachable.add(name)
                todo.extend(transitions(states[name]))
        assert reachable == set(states), f"{where}: unreachable states {set(states) - reachable}"


def test_input_paths_are_escalation_input_fields(asl: dict[str, Any]) -> None:
    """Every `$.field` the ASL reads is a field of herald.messages.EscalationInput (or written by an
    earlier ResultPath)."""
    from herald.messages import EscalationInput

    written = {
        state["ResultPath"].split(".")[1]
        for _, _, state in all_states(asl)
        if isinstance(state.get("ResultPath"), str) and state["ResultPath"].startswith("$.")
    }
    for catcher in (c for _, _, s in all_states(asl) for c in s.get("Catch", [])):
        if isinstance(catcher.get("ResultPath"), str) and catcher["ResultPath"].startswith("$."):
            written.add(catcher["ResultPath"].split(".")[1])
    read: set[tuple[str, str]] = set()

    def collect(node: Any, state_name: str) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                reads = key.endswith(".$") or (key.endswith("Path") and key != "ResultPath")
                if reads and isinstance(value, str) and value.startswith("$."):
                    read.add((state_name, re.split(r"[.\[]", value[2:])[0]))
                collect(value, state_name)
        elif isinstance(node, list):
            for value in node:
                collect(value, state_name)

    for _, name, state in all_states(asl):
        collect(state, name)
    known = set(EscalationInput.model_fields) | written
    unknown = sorted((state, field) for state, field in read if field not in known)
    assert not unknown, (
        f"the ASL reads input fields that EscalationInput does not define: {unknown} "
        f"(fields: {sorted(EscalationInput.model_fields)})"
    )


def test_state_machine_logging_and_tracing(sm_props: dict[str, Any], template: dict[str, Any]) -> None:
    logging = sm_props.get("Logging") or {}
    assert logging.get("IncludeExecutionData") is True, "escalation logging must include execution data"
    destinations = logging.get("Destinations") or []
    assert destinations, "escalation logging has no destination"
    group = target_id(destinations[0]["CloudWatchLogsLogGroup"]["LogGroupArn"])
    assert group in template["Resources"], f"escalation log group {group!r} is not a resource"
    assert props(template["Resources"][group]).get("RetentionInDays"), f"{group} has no retention"
    assert (sm_props.get("Tracing") or {}).get("Enabled") is True, "escalation tracing is not enabled"
