"""`herald suppression`: which entry a contact names (`herald.suppression_admin`, as the console's
routes name it), and the listings printed."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import click

from herald import suppression_admin
from herald.models import Channel


def address_of(contact: str, channel: Channel | None = None) -> tuple[str, str | None]:
    """`herald.suppression_admin.address_of`, its refusal as click's usage error."""
    try:
        return suppression_admin.address_of(contact, channel)
    except suppression_admin.NotAContact as error:
        raise click.BadParameter(str(error)) from None


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
