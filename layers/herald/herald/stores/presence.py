"""Presence table: who has an occupied `private-user-<id>` channel right now."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict


class Presence(BaseModel):
    model_config = ConfigDict(frozen=True)

    user_id: str
    occupied: bool = False
    time_ms: int = 0
    expires_at: int | None = None

    def online_at(self, now: datetime, max_age_seconds: int) -> bool:
        """Occupied, not expired, and confirmed by a webhook no older than `max_age_seconds`.

        Lost webhooks would otherwise leave a user "online" forever and starve them of pushes.
        """
        now_s = now.timestamp()
        if not self.occupied:
            return False
        if self.expires_at is not None and self.expires_at <= now_s:
            return False
        return now_s - self.time_ms / 1000 <= max_age_seconds


def presence_key(user_id: str) -> dict[str, str]:
    return {"user_id": user_id}


def presence_from_item(item: dict[str, Any]) -> Presence:
    return Presence.model_validate(item)
