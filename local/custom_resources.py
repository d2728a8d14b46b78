"""CloudFormation custom resources on the local stack: each `Custom::*` resource's function is
invoked once the stack's functions are up, with the request CloudFormation sends (`RequestType`
Create, the resource's properties, a `ResponseURL`), and its answer is read from that URL as
CloudFormation reads it: a PUT of `{Status, Reason, PhysicalResourceId, Data, ...}`. A `FAILED`
answer (or none) fails the stack's start, as it would roll back a deploy.

Not emulated: Update and Delete requests (the local stack is provisioned afresh each time).
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from local.model import StackDescription

Invoke = Callable[[str, Any], Any]
ACCOUNT = "123456789012"  # moto's


class CustomResourceFailed(RuntimeError):
    """A custom resource answered FAILED, or did not answer."""


class ResponseCapture:
    """A one-shot loopback endpoint standing in for CloudFormation's pre-signed response URL."""

    def __init__(self) -> None:
        self.answers: dict[str, dict[str, Any]] = {}
        self.arrived = threading.Condition()
        responses = self

        class Handler(BaseHTTPRequestHandler):
            def do_PUT(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with responses.arrived:
                    responses.answers[self.path.strip("/")] = json.loads(body or b"{}")
                    responses.arrived.notify_all()
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait(self, key: str, timeout: float) -> dict[str, Any] | None:
        with self.arrived:
            self.arrived.wait_for(lambda: key in self.answers, timeout=timeout)
            return self.answers.get(key)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def run_custom_resources(
    description: StackDescription, invoke: Invoke, timeout: float = 120.0
) -> dict[str, Any]:
    """Create every custom resource; returns each one's `Data` by logical id."""
    if not description.custom_resources:
        return {}
    responses = ResponseCapture()
    created: dict[str, Any] = {}
    try:
        for logical_id, resource in sorted(description.custom_resources.items()):
            request_id = str(uuid.uuid4())
            function = description.functions[resource.function]
            event = {
                "RequestType": "Create",
                "ServiceToken": description.resources[resource.function].attributes.get(
                    "Arn", function.logical_id
                ),
                "ResponseURL": f"{responses.url}/{request_id}",
                "StackId": f"arn:aws:cloudformation:{description.region}:{ACCOUNT}:stack/local/{request_id}",
                "RequestId": request_id,
                "LogicalResourceId": logical_id,
                "ResourceType": resource.type,
                "ResourceProperties": {"ServiceToken": "local", **resource.properties},
            }
            try:
                invoke(resource.function, event)
            except Exception as error:
                raise CustomResourceFailed(
                    f"{logical_id}: {resource.function} raised without answering ({error}); "
                    "CloudFormation would wait the resource's ServiceTimeout, then fail the deploy"
                ) from error
            answer = responses.wait(request_id, timeout)
            if answer is None:
                raise CustomResourceFailed(f"{logical_id}: {resource.function} sent no response")
            if answer.get("Status") != "SUCCESS":
                raise CustomResourceFailed(f"{logical_id}: {answer.get('Reason')}")
            created[logical_id] = answer.get("Data") or {}
    finally:
        responses.close()
    return created
