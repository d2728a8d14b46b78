"""Suite-wide rules: every test belongs to exactly one suite, named after its folder."""

from __future__ import annotations

import pytest

import local.moto_server  # noqa: F401  (moto serves one DynamoDB request at a time: decision 037)

SUITES = ("unit", "integration", "infra", "e2e", "browser")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        parts = item.nodeid.split("/")
        folder = parts[1] if len(parts) > 2 and parts[0] == "tests" else None
        marks = {m.name for m in item.iter_markers() if m.name in SUITES}
        if folder in SUITES and marks != {folder}:
            raise pytest.UsageError(f"{item.nodeid} must be marked `{folder}` (and only that suite): {marks}")
