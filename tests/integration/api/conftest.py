"""The API function on moto, provisioned from template.yaml, reached through the template's routes
and JWT authorizer (tests/support/api.py). One stack for the package, fresh for each test
(tests/support/stack.py: SharedStack)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from herald.models import Category, Urgency
from herald.routing.decision import notification_id_for
from herald.stores.notifications import NotificationRecord, NotificationStore, stamp
from tests.support.api import ApiClient, api_credentials
from tests.support.stack import MotoStack, SharedStack

T0 = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="package")
def _provisioned() -> Iterator[SharedStack]:
    """One stack for the package's modules, reset between tests."""
    with SharedStack(sandbox=api_credentials()) as shared:
        yield shared


@pytest.fixture
def stack(_provisioned: SharedStack, monkeypatch: pytest.MonkeyPatch) -> Iterator[MotoStack]:
    with _provisioned.checkout(monkeypatch) as provisioned:
        yield provisioned


@pytest.fixture
def api(stack: MotoStack) -> Iterator[ApiClient]:
    client = ApiClient(stack)
    yield client
    client.close()


def seed_notification(
    stack: MotoStack,
    user_id: str,
    key: str,
    *,
    created_at: datetime = T0,
    type_name: str = "order_shipped",
    inbox: bool = True,
    data: dict[str, Any] | None = None,
    in_app: dict[str, str] | None = None,
    expires_at: int | None = None,
) -> str:
    """A notification record as the router writes it (inbox state included); returns its id."""
    notification_id = notification_id_for(f"{key}#{user_id}")
    NotificationStore(stack.client("dynamodb"), stack.tables["NotificationsTable"]).create(
        NotificationRecord(
            user_id=user_id,
            notification_id=notification_id,
            event_id=key,
            type=type_name,
            category=Category.TRANSACTIONAL,
            urgency=Urgency.MEDIUM,
            locale="en",
            data=data if data is not None else {"order_id": key, "tracking_url": "https://example.com/t"},
            created_at=created_at,
            status="dispatched" if inbox else "skipped",
            inbox=inbox,
            unread_at=stamp(created_at) if inbox else None,
            expires_at=expires_at
            if expires_at is not None
            else int((created_at + timedelta(days=90)).timestamp()),
            in_app=in_app,
        )
    )
    return notification_id
