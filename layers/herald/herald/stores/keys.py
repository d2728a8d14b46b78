"""Key shapes of Herald's tables (docs/contracts.md §Tables): one place, so stores agree.

Suppression keys are hashes of the normalized contact (decision 017): an entry outlives the
person's erasure, so its key must not be the address itself. The plain contact, while the person
exists, is only the entry's non-key `contact` attribute.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

PROFILE_SK = "PROFILE"
DIRECTORY_SK = "DIRECTORY"  # the directory's version / tombstone item (decision 014)
DEVICE_OWNER_SK = "OWNER"
RELEASED_DEVICE_SK_PREFIX = "RELEASED_DEVICE#"


def user_pk(user_id: str) -> str:
    return f"USER#{user_id}"


def role_sk(role: str) -> str:
    return f"ROLE#{role}"


TOPIC_SK_PREFIX = "TOPIC#"
# Everyone, for broadcasts to `{"all": true}`: each person's `EVERYONE` item is a membership of the
# ByRole index under one of EVERYONE_SHARDS reserved role names (`#` is not allowed in roles), so
# the audience is read a page at a time per shard, with no scan and no hot index key (decision 027).
EVERYONE_SK = "EVERYONE"
EVERYONE_SHARDS = 16


def everyone_role(user_id: str) -> str:
    return f"#all#{int(sha256_hex(user_id)[:8], 16) % EVERYONE_SHARDS:02d}"


def everyone_shard_role(shard: int) -> str:
    return f"#all#{shard:02d}"


def topic_sk(topic: str) -> str:
    """A person's item for one topic (herald.topics): the directory's listing and their own choice."""
    return TOPIC_SK_PREFIX + topic


def sha256_hex(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


def normalized_email(email: str) -> str:
    return email.strip().lower()


def email_address(email: str) -> str:
    """Suppression key of an email address: `email#sha256:<hex of the lowercased address>`."""
    return f"email#sha256:{sha256_hex(normalized_email(email))}"


def sms_address(phone: str) -> str:
    """Suppression key of a phone number (E.164): `sms#sha256:<hex>`."""
    return f"sms#sha256:{sha256_hex(phone.strip())}"


def push_address(token: str) -> str:
    """Suppression key of a push token: `push#sha256:<hex>`."""
    return f"push#sha256:{sha256_hex(token)}"


def device_owner_key(token: str) -> dict[str, str]:
    """Users table: who holds a push token now (one owner per token, decision 017)."""
    return {"pk": f"DEVICE#{sha256_hex(token)}", "sk": DEVICE_OWNER_SK}


def released_device_key(user_id: str, token: str) -> dict[str, str]:
    """Users table, the person's partition: a token they removed (a repeated DELETE answers alike)."""
    return {"pk": user_pk(user_id), "sk": RELEASED_DEVICE_SK_PREFIX + sha256_hex(token)}


def rate_counter_key(user_id: str, at: datetime) -> str:
    """Rate counters table: one item per person and clock hour, one count attribute per channel."""
    return f"{user_id}#{at.astimezone(UTC).strftime('%Y%m%d%H')}"
