"""Webhook receivers: stand-ins for system subscribers that check Herald's webhook signature."""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from werkzeug.wrappers import Request, Response

from local.sandboxes.outbox import Outbox
from local.sandboxes.web import ControlError, Route, control_json, json_response

TIMESTAMP_HEADER = "X-Herald-Timestamp"
SIGNATURE_HEADER = "X-Herald-Signature"
IDEMPOTENCY_HEADER = "Idempotency-Key"
TOLERANCE_SECONDS = 300


def herald_signature(secret: str, timestamp: str, body: bytes) -> str:
    """`v1=` + hex HMAC-SHA256(secret, "{timestamp}.{raw body}") — Herald's webhook signature."""
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"v1={digest}"


@dataclass
class ReceiverState:
    secret: str
    keys: dict[str, int] = field(default_factory=dict)  # Idempotency-Key -> deliveries seen
    accepted: int = 0
    duplicates: int = 0
    rejected: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"accepted": self.accepted, "duplicates": self.duplicates, "rejected": self.rejected}


class WebhookReceivers:
    """`POST /receivers/{name}`: verify, dedupe by Idempotency-Key, record in the outbox."""

    name = "webhook"

    def __init__(self, secrets_by_name: Mapping[str, str], outbox: Outbox) -> None:
        self.outbox = outbox
        self._receivers = {name: ReceiverState(secret) for name, secret in secrets_by_name.items()}
        self._lock = threading.Lock()

    def add(self, name: str, secret: str | None = None) -> str:
        """Create (or re-key) a receiver; returns its signing secret."""
        secret = secret or "whsec_" + secrets.token_hex(24)
        with self._lock:
            state = self._receivers.get(name)
            if state is None:
                self._receivers[name] = ReceiverState(secret)
            else:
                state.secret = secret
        return secret

    def secret(self, name: str) -> str:
        with self._lock:
            return self._receivers[name].secret

    def names(self) -> list[str]:
        with self._lock:
            return sorted(self._receivers)

    def stats(self) -> dict[str, dict[str, Any]]:
        with self._lock:
            return {name: state.to_dict() for name, state in sorted(self._receivers.items())}

    def duplicates(self, name: str) -> int:
        with self._lock:
            return self._receivers[name].duplicates

    def reset(self) -> None:
        """Forget seen keys and counters (the secrets stay)."""
        with self._lock:
            for state in self._receivers.values():
                state.keys.clear()
                state.accepted = state.duplicates = state.rejected = 0

    def signed_headers(
        self, name: str, body: bytes, idempotency_key: str, timestamp: int | None = None
    ) -> dict[str, str]:
        """Headers Herald would send with `body` (for tests and demos)."""
        stamp = str(int(time.time()) if timestamp is None else timestamp)
        return {
            "Content-Type": "application/json",
            TIMESTAMP_HEADER: stamp,
            SIGNATURE_HEADER: herald_signature(self.secret(name), stamp, body),
            IDEMPOTENCY_HEADER: idempotency_key,
        }

    # -- HTTP --------------------------------------------------------------------------------

    def routes(self) -> list[Route]:
        return [
            Route(
                "/receivers/<name>", ("POST",), self._receive, "webhook", lambda request, args: [args["name"]]
            ),
            Route("/_receivers", ("GET",), self._list),
            Route("/_receivers", ("POST",), self._add),
        ]

    def fault_response(self, status: int) -> Response:
        return json_response({"error": f"receiver failure {status}"}, status)

    def _reject(self, name: str, status: int, message: str) -> Response:
        with self._lock:
            self._receivers[name].rejected += 1
        return json_response({"error": message}, status)

    def _receive(self, request: Request, args: dict[str, str]) -> Response:
        name = args["name"]
        with self._lock:
            state = self._receivers.get(name)
            secret = state.secret if state else None
        if secret is None:
            return json_response({"error": f"no receiver named {name!r}"}, 404)
        timestamp = request.headers.get(TIMESTAMP_HEADER, "")
        signatures = [
            part.strip() for part in request.headers.get(SIGNATURE_HEADER, "").split(",") if part.strip()
        ]
        if not timestamp or not signatures:
            return self._reject(name, 401, "missing signature headers")
        try:
            skew = abs(time.time() - int(timestamp))
        except ValueError:
            return self._reject(name, 401, "invalid timestamp")
        if skew > TOLERANCE_SECONDS:
            return self._reject(name, 401, "timestamp outside the tolerance window")
        body = request.get_data(cache=True)
        expected = herald_signature(secret, timestamp, body)
        if not any(hmac.compare_digest(expected, signature) for signature in signatures):
            return self._reject(name, 401, "signature mismatch")
        key = request.headers.get(IDEMPOTENCY_HEADER, "").strip()
        if not key:
            return self._reject(name, 400, "Idempotency-Key header is required")
        with self._lock:
            seen = state.keys.get(key, 0)
            state.keys[key] = seen + 1
            if seen:
                state.duplicates += 1
            else:
                state.accepted += 1
        if seen:
            return json_response({"status": "duplicate", "idempotency_key": key})
        text = body.decode("utf-8", errors="replace")
        try:
            parsed = json.loads(text)
        except ValueError:
            parsed = None
        document = parsed if isinstance(parsed, dict) else {"raw": text}
        subject = next(
            (str(document[k]) for k in ("subject", "title", "type", "event") if document.get(k)), None
        )
        self.outbox.record(
            provider="webhook",
            channel="webhook",
            recipient=name,
            subject=subject,
            body=text,
            provider_id=key,
            request=document,
        )
        return json_response({"status": "accepted", "idempotency_key": key})

    def _list(self, request: Request, args: dict[str, str]) -> Response:
        return json_response({"receivers": self.stats()})

    def _add(self, request: Request, args: dict[str, str]) -> Response:
        data = control_json(request, "name")
        if not isinstance(data["name"], str):
            raise ControlError("name must be a string")
        secret = self.add(data["name"], data.get("secret"))
        base = request.host_url.rstrip("/")
        return json_response(
            {"name": data["name"], "secret": secret, "url": f"{base}/receivers/{data['name']}"}, 201
        )
