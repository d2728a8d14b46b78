"""`herald suppression`: which entry a contact names, and the listings.

Entries are keyed by a hash of the contact (decision 017), so an operator names the contact itself
(an email address, an E.164 phone number, a device token) and the command derives the key the same
way the senders do; an entry whose plain contact is gone (its person was erased) is named by its
key, as `list` prints it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

import click

from herald.models import Channel
from herald.stores.keys import email_address, push_address, sms_address

KEY_PATTERN = re.compile(r"^(email|sms|push)#sha256:[0-9a-f]{64}$")
PHONE_PATTERN = re.compile(r"^\+[1-9][0-9]{6,14}$")
PHONE_LIKE = re.compile(r"^[+0-9 ().-]+$")  # a number written some other way than E.164
TOKEN_PATTERN = re.compile(r"^[A-Za-z0-9_:.-]{8,}$")  # FCM and APNs tokens: no spaces, no @
KEYS = {Channel.EMAIL: email_address, Channel.SMS: sms_address, Channel.PUSH: push_address}


def address_of(contact: str, channel: Channel | None = None) -> tuple[str, str | None]:
    """(the suppression key, the plain contact to keep on the entry: None for a key or a device
    token, which are never kept in plain). A contact that is none of the three is refused rather
    than guessed: a wrong guess would suppress, or lift, nothing."""
    contact = contact.strip()
    if KEY_PATTERN.match(contact):
        return contact, None
    if channel is None:
        if "@" in contact:
            channel = Channel.EMAIL
        elif PHONE_LIKE.match(contact):
            channel = Channel.SMS
        elif TOKEN_PATTERN.match(contact):
            channel = Channel.PUSH
        else:
            raise click.BadParameter(
                "not an email address, an E.164 phone number or a device token (or say --channel)"
            )
    if channel is Channel.SMS and not PHONE_PATTERN.match(contact):
        raise click.BadParameter(f"{contact!r}: write the number in E.164, as the senders do (+14155550100)")
    if channel not in KEYS:
        raise click.BadParameter(f"{channel} has no suppression list")
    return KEYS[channel](contact), None if channel is Channel.PUSH else contact


def render_entries(entries: Iterable[dict[str, Any]]) -> list[str]:
    rows = sorted(entries, key=lambda e: str(e.get("created_at", "")), reverse=True)
    if not rows:
        return ["no suppressed contacts"]
    lines = [f"{len(rows)} suppressed contact(s), newest first"]
    for entry in rows:
        contact = entry.get("contact") or entry["address"]
        latest = entry.get("last_reason")
        later = f" (latest: {latest})" if latest and latest != entry.get("reason") else ""
        cause = f" · notification {entry['notification_id']}" if entry.get("notification_id") else ""
        lines.append(
            f"  {entry.get('created_at', '-')}  {contact}  {entry.get('reason', '?')}{later} "
            f"· {entry.get('source', '?')}{cause}"
        )
    return lines


def render_lift_records(records: Iterable[dict[str, Any]]) -> list[str]:
    rows = sorted(records, key=lambda r: str(r.get("lifted_at", "")), reverse=True)
    if not rows:
        return ["no lifted entries on record"]
    lines = [f"{len(rows)} lifted entr{'y' if len(rows) == 1 else 'ies'}, newest first"]
    for record in rows:
        lines.append(
            f"  {record.get('lifted_at')}  {record.get('lifted_address')}  "
            f"was {record.get('reason', '?')} ({record.get('source', '?')}) "
            f"· lifted by {record.get('lifted_by')}: {record.get('lift_reason')}"
        )
    return lines
