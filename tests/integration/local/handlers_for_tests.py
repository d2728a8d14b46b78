"""Lambda handlers the runner tests invoke (module `tests.integration.local.handlers_for_tests`).

The runner imports this module afresh for each function (a cold start): read what a function saw
through `runner.module(logical_id)`, not through an import of your own.
"""

from __future__ import annotations

import os
from typing import Any

WATCHED = ("HERALD_TEST_MARKER", "AWS_LAMBDA_FUNCTION_NAME", "AWS_ENDPOINT_URL", "AWS_PROFILE")

# The environment this module was imported with (the function's cold start).
IMPORT_ENV = {name: os.environ.get(name) for name in WATCHED}
CALLS: list[dict[str, Any]] = []


def _record(event: Any, context: Any) -> None:
    CALLS.append(
        {
            "event": event,
            "env": {name: os.environ.get(name) for name in WATCHED},
            "context": {
                "function_name": context.function_name,
                "memory_limit_in_mb": context.memory_limit_in_mb,
                "invoked_function_arn": context.invoked_function_arn,
                "aws_request_id": context.aws_request_id,
                "remaining_ms": context.get_remaining_time_in_millis(),
            },
        }
    )


def bodies(calls: list[dict[str, Any]] | None = None) -> list[list[str]]:
    """The bodies of each SQS batch received, in order."""
    return [[r["body"] for r in c["event"].get("Records", [])] for c in (CALLS if calls is None else calls)]


def record(event: dict[str, Any], context: Any) -> None:
    _record(event, context)


def partial(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Fails every record whose body starts with `fail`."""
    _record(event, context)
    return {
        "batchItemFailures": [
            {"itemIdentifier": r["messageId"]} for r in event["Records"] if r["body"].startswith("fail")
        ]
    }


def bad_response(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Reports a failure for a message id that is not in the batch (Lambda: the whole batch failed)."""
    _record(event, context)
    return {"batchItemFailures": [{"itemIdentifier": "not-in-this-batch"}]}


def explode(event: dict[str, Any], context: Any) -> None:
    _record(event, context)
    raise RuntimeError("handler failure for the test")


def echo(event: Any, context: Any) -> dict[str, Any]:
    _record(event, context)
    os.environ["SET_BY_HANDLER"] = "leak?"  # a handler may change its environment: it must not leak
    return {"event": event, "marker": os.environ.get("HERALD_TEST_MARKER"), "request": context.aws_request_id}
