"""Fixtures for the integration tests' modules: template.yaml on moto, provisioned once per module
and handed to each test as freshly provisioned (tests/support/stack.py: SharedStack). The `api` and
`channels` packages provision once per package with their own settings (their conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.stack import MotoStack, SharedStack


@pytest.fixture(scope="module")
def _provisioned() -> Iterator[SharedStack]:
    with SharedStack() as shared:
        yield shared


@pytest.fixture
def stack(_provisioned: SharedStack, monkeypatch: pytest.MonkeyPatch) -> Iterator[MotoStack]:
    """template.yaml on moto, provisioned once for the module and fresh for each test."""
    with _provisioned.checkout(monkeypatch) as provisioned:
        yield provisioned
