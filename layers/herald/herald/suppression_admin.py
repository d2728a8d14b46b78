"""An operator's hand on the suppression list, for every operator surface (`herald suppression`,
the console's admin routes): which entry a contact names, and lifting it.

Entries are keyed by a hash of the contact (decision 017), so an operator names the contact itself
(an email address, an E.164 phone number, a device token) and the key is derived the same way the
senders derive it; an entry whose plain contact is gone (its person was erased) is named by its key,
as the listings show it.
"""

from __future__ import annotations

import re
from datetime import datetime

from herald.models import Channel
from herald.ses_feedback import soft_bounce_key
from herald.stores.keys import email_address, push_address, sms_address
from herald.stores.suppression import Lifted, SuppressionStore

KEY_PATTERN = re.compile(r"^(email|sms|push)#sha256:[0-9a-f]{64}$")
PHONE_PATTERN = re.compile(r"^\+[1-9][0-9]{6,14}$")
PHONE_LIKE = re.compile(r"^[+0-9 ().-]+$")  # a number written some other way than E.164
TOKEN_PATTERN = re.compile(r"^[A-Za-z0-9_:.-]{8,}$")  # FCM and APNs tokens: no spaces, no @
KEYS = {Channel.EMAIL: email_address, Channel.SMS: sms_address, Channel.PUSH: push_address}


class NotAContact(ValueError):
    """What the operator named is no contact a suppression entry can have."""


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
            raise NotAContact(
                "not an email address, an E.164 phone number or a device token (or say the channel)"
            )
    if channel is Channel.SMS and not PHONE_PATTERN.match(contact):
        raise NotAContact(f"{contact!r}: write the number in E.164, as the senders do (+14155550100)")
    if channel not in KEYS:
        raise NotAContact(f"{channel} has no suppression list")
    return KEYS[channel](contact), None if channel is Channel.PUSH else contact


def lift(
    store: SuppressionStore,
    address: str,
    *,
    counters_table: str,
    by: str,
    why: str,
    force: bool = False,
    now: datetime | None = None,
) -> Lifted | None:
    """`SuppressionStore.lift`, with the address's soft-bounce count deleted in the same transaction
    (one more soft bounce does not suppress it again at once). None when it was not suppressed;
    raises `SuppressionChanged` and `ConsentRequired` as the store does."""
    return store.lift(
        address, by=by, why=why, force=force, reset=[(counters_table, soft_bounce_key(address))], now=now
    )
