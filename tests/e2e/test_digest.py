"""The unread digest on the local stack (issue 10 item 7): its own stack, with the digest due 20
seconds after a medium notification (the person who reads theirs does so well before) and the
digest function fired every minute by the stack's scheduler, as EventBridge fires it. An unread
notification → one digest email; a read one → none."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from herald.catalog import load_catalog
from herald.users import UserProfile
from local.app_client import AppClient
from local.stack import LocalStack
from tests.e2e.conftest import emails_to, outbox, put_event, wait_until
from tests.e2e.test_local_stack import DEVICE, add_user

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    with LocalStack(
        aws_port=0,
        sandbox_port=0,
        api_port=0,
        parameters={
            "DigestDelaySeconds": "20",
            "DigestMinIntervalSeconds": "0",
            "DigestSchedule": "rate(1 minute)",
        },
        state_file=tmp_path_factory.mktemp("digest") / "stack.json",
    ) as running:
        yield running
        assert running.moto
        running.moto.reset()


def daytime_zone() -> str:
    """A fixed-offset zone where it is now 12:00-ish (inside the digest's 09:00-21:00 window)."""
    offset = (12 - datetime.now(UTC).hour) % 24
    offset = offset - 24 if offset > 12 else offset
    return "Etc/GMT" if offset == 0 else f"Etc/GMT{-offset:+d}"  # Etc/GMT-3 is UTC+3


def test_an_unread_notification_is_digested_once_and_a_read_one_never(stack: LocalStack) -> None:
    assert stack.api and stack.sandbox
    for user_id in ("dig-unread", "dig-read"):
        add_user(
            stack,
            UserProfile(
                user_id=user_id,
                email=f"{user_id}+success@simulator.amazonses.com",
                time_zone=daytime_zone(),
                devices={f"{user_id}-phone": DEVICE},
            ),
        )
        put_event(
            stack,
            {
                "event_id": f"dig-{user_id}",
                "type": "order_shipped",
                "user_id": user_id,
                "data": load_catalog().entry("order_shipped").sample_data,
            },
        )
    app = AppClient(stack.api.url, stack.sandbox.url)
    assert wait_until(lambda: outbox(stack, provider="fcm", recipient="dig-read-phone"))
    (item,) = app.get("/v1/me/notifications", user="dig-read").body["items"]
    assert app.post(f"/v1/me/notifications/{item['id']}/read", user="dig-read").status == 200

    digests = wait_until(lambda: emails_to(stack, "dig-unread+success@"), timeout=90)

    assert len(digests) == 1
    assert wait_until(lambda: len(digests_listed(app)) == 1, timeout=10)
    assert emails_to(stack, "dig-read+success@") == []


def digests_listed(app: AppClient) -> list[dict]:
    """The digest record the function wrote for the unread person (as their export shows it)."""
    exported = app.get("/v1/me/export", user="dig-unread").body
    return [n for n in exported["notifications"] if n.get("type") == "unread_digest"]
