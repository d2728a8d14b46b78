"""Key shapes of Herald's tables (docs/contracts.md §Tables): one place, so stores agree."""

from __future__ import annotations

from datetime import datetime

from herald.models import Channel

PROFILE_SK = "PROFILE"


def user_pk(user_id: str) -> str:
    return f"USER#{user_id}"


def role_sk(role: str) -> str:
    return f"ROLE#{role}"


def email_address(email: str) -> str:
    return f"email#{email.strip().lower()}"


def sms_address(phone: str) -> str:
    return f"sms#{phone}"


def push_address(token: str) -> str:
    return f"push#{token}"


def rate_counter_key(user_id: str, channel: Channel, at: datetime) -> str:
    return f"{user_id}#{channel.value}#{at.strftime('%Y%m%d%H')}"
