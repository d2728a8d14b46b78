"""Presence for the realtime sender's tests: Pusher's occupancy as the webhook receiver records it
(`PresenceStore.apply`, the only writer), and a count of the requests the pusher SDK makes."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from pusher.requests import RequestsBackend

from herald.stores.presence import PresenceStore
from tests.integration.channels.conftest import Env

MAX_AGE_SECONDS = 21600


def set_presence(env: Env, user_id: str, *, occupied: bool, age_seconds: float = 0) -> None:
    """The sandbox channel and Herald's presence item agree: `occupied` as of `age_seconds` ago."""
    channel = f"private-user-{user_id}"
    if occupied:
        env.sandbox.pusher.occupy(channel)
    store = PresenceStore(env.client("dynamodb"), env.stack.tables["PresenceTable"])
    time_ms = int((time.time() - age_seconds) * 1000)
    assert store.apply(user_id, occupied=occupied, time_ms=time_ms, max_age_seconds=MAX_AGE_SECONDS)


@contextmanager
def pusher_requests(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple[str, str]]]:
    """Every (method, path) the pusher SDK sends while the block runs."""
    sent: list[tuple[str, str]] = []
    original = RequestsBackend.send_request

    def counting(self: RequestsBackend, request: Any) -> Any:
        sent.append((request.method, request.path))
        return original(self, request)

    with monkeypatch.context() as patch:
        patch.setattr(RequestsBackend, "send_request", counting)
        yield sent
