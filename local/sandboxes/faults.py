"""Injected failures: make a provider answer errors, or answer slowly, for a while."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

PROVIDERS = frozenset({"pusher", "fcm", "oauth", "twilio", "sendgrid", "webhook"})


@dataclass
class FaultRule:
    """One rule. Without `count` or `duration_seconds` it lasts until cleared."""

    id: int
    provider: str
    status: int | None = None
    count: int | None = None
    duration_seconds: float | None = None
    latency_ms: int = 0
    match: str | None = None
    retry_after: int | None = None
    created_at: float = field(default_factory=time.time)
    hits: int = 0

    @property
    def expires_at(self) -> float | None:
        return None if self.duration_seconds is None else self.created_at + self.duration_seconds

    def active(self, now: float) -> bool:
        if self.count is not None and self.hits >= self.count:
            return False
        expires_at = self.expires_at
        return expires_at is None or now < expires_at

    def matches(self, provider: str, path: str, recipients: Iterable[str]) -> bool:
        if self.provider != provider:
            return False
        if not self.match:
            return True
        return self.match in path or any(self.match in recipient for recipient in recipients)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "provider": self.provider,
            "status": self.status,
            "count": self.count,
            "remaining": None if self.count is None else max(self.count - self.hits, 0),
            "duration_seconds": self.duration_seconds,
            "latency_ms": self.latency_ms,
            "match": self.match,
            "retry_after": self.retry_after,
            "hits": self.hits,
        }


@dataclass(frozen=True)
class FaultDecision:
    latency_ms: int = 0
    status: int | None = None
    retry_after: int | None = None
    rule_ids: tuple[int, ...] = ()


class Faults:
    """Thread-safe list of fault rules, consulted by the host before each provider request."""

    def __init__(self) -> None:
        self._rules: list[FaultRule] = []
        self._ids = itertools.count(1)
        self._lock = threading.Lock()

    def add(
        self,
        provider: str,
        *,
        status: int | None = None,
        count: int | None = None,
        duration_seconds: float | None = None,
        latency_ms: int = 0,
        match: str | None = None,
        retry_after: int | None = None,
    ) -> FaultRule:
        """A rule for `provider`: answer `status` (with `Retry-After: retry_after` when given)
        and/or wait `latency_ms`, for `count` requests or `duration_seconds` (else until cleared),
        only for requests whose path or recipient contains `match` when given."""
        if provider not in PROVIDERS:
            raise ValueError(f"unknown provider {provider!r}; one of {sorted(PROVIDERS)}")
        if status is not None and not 400 <= status <= 599:
            raise ValueError("status must be an HTTP error status (400-599)")
        if status is None and latency_ms <= 0:
            raise ValueError("a fault needs a status and/or a positive latency_ms")
        if count is not None and count < 1:
            raise ValueError("count must be at least 1")
        if duration_seconds is not None and duration_seconds <= 0:
            raise ValueError("duration_seconds must be positive")
        if latency_ms < 0:
            raise ValueError("latency_ms must not be negative")
        if retry_after is not None and (retry_after < 0 or status is None):
            raise ValueError("retry_after needs a status and must not be negative")
        with self._lock:
            rule = FaultRule(
                id=next(self._ids),
                provider=provider,
                status=status,
                count=count,
                duration_seconds=duration_seconds,
                latency_ms=latency_ms,
                match=match or None,
                retry_after=retry_after,
            )
            self._rules.append(rule)
            return rule

    def add_from_dict(self, spec: Mapping[str, Any]) -> FaultRule:
        """The JSON shape of `POST /_faults`."""
        allowed = {"provider", "status", "count", "duration_seconds", "latency_ms", "match", "retry_after"}
        unknown = set(spec) - allowed
        if unknown:
            raise ValueError(f"unknown fault fields: {sorted(unknown)}")
        provider = spec.get("provider")
        if not isinstance(provider, str):
            raise ValueError("provider is required")

        def number(name: str, kind: type) -> Any:
            value = spec.get(name)
            if value is None:
                return None
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"{name} must be a number")
            return kind(value)

        match = spec.get("match")
        if match is not None and not isinstance(match, str):
            raise ValueError("match must be a string")
        return self.add(
            provider,
            status=number("status", int),
            count=number("count", int),
            duration_seconds=number("duration_seconds", float),
            latency_ms=number("latency_ms", int) or 0,
            match=match,
            retry_after=number("retry_after", int),
        )

    def check(self, provider: str, path: str, recipients: Iterable[str] = ()) -> FaultDecision:
        """Consume the rules matching this request; the first matching status rule decides."""
        recipients = list(recipients)
        now = time.time()
        latency = 0
        status: int | None = None
        retry_after: int | None = None
        used: list[int] = []
        with self._lock:
            self._rules = [rule for rule in self._rules if rule.active(now)]
            for rule in self._rules:
                if not rule.matches(provider, path, recipients):
                    continue
                if rule.status is not None and status is not None:
                    continue  # an earlier rule already fails this request
                rule.hits += 1
                used.append(rule.id)
                latency += rule.latency_ms
                if rule.status is not None:
                    status, retry_after = rule.status, rule.retry_after
        return FaultDecision(latency_ms=latency, status=status, retry_after=retry_after, rule_ids=tuple(used))

    def rules(self) -> list[FaultRule]:
        now = time.time()
        with self._lock:
            return [rule for rule in self._rules if rule.active(now)]

    def remove(self, rule_id: int) -> bool:
        with self._lock:
            before = len(self._rules)
            self._rules = [rule for rule in self._rules if rule.id != rule_id]
            return len(self._rules) < before

    def clear(self, provider: str | None = None) -> None:
        with self._lock:
            self._rules = [rule for rule in self._rules if provider is not None and rule.provider != provider]
