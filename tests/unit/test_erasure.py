"""Hashed suppression keys and what an erasure keeps for a person's contacts (decision 017)."""

from __future__ import annotations

import hashlib
import re

import pytest

from herald.erasure import contact_addresses
from herald.stores.keys import email_address, push_address, sms_address

pytestmark = pytest.mark.unit


def test_suppression_keys_are_hashes_of_the_normalized_contact() -> None:
    key = email_address("  Ana@Example.COM ")

    assert key == "email#sha256:" + hashlib.sha256(b"ana@example.com").hexdigest()
    assert key == email_address("ana@example.com")
    assert re.fullmatch(r"sms#sha256:[0-9a-f]{64}", sms_address("+14155550100"))
    assert re.fullmatch(r"push#sha256:[0-9a-f]{64}", push_address("fcm:abc"))
    assert "ana" not in key and "4155550100" not in sms_address("+14155550100")


def test_each_contact_of_the_person_is_kept_and_their_channel_opt_outs_too() -> None:
    # GIVEN a profile item: directory part (SMS off), the person's own email (email off in the app),
    # two devices, and an older phone from their consent history
    item = {
        "user_id": "42",
        "email": "ana@example.com",
        "phone": "+14155550100",
        "preferences": {"channels": {"sms": False, "email": True}},
        "devices": {"tok-a": {"platform": "ios"}, "tok-b": {"platform": "android"}},
        "own": {"email": "ana.new@example.com", "preferences": {"channels": {"email": False}}},
    }

    found = dict(contact_addresses(item, ["+14155550999", "+14155550100"]))

    # THEN every address is there; the person's own choice (email off) wins over the directory's
    assert found == {
        email_address("ana@example.com"): True,
        email_address("ana.new@example.com"): True,
        sms_address("+14155550100"): True,
        sms_address("+14155550999"): False,
        push_address("tok-a"): False,  # a token's next holder is someone else: no opt-out
        push_address("tok-b"): False,
    }


def test_a_malformed_profile_still_yields_its_contacts() -> None:
    item = {"email": "ana@example.com", "preferences": "garbage", "devices": ["not", "a", "map"], "own": 7}

    assert contact_addresses(item) == [(email_address("ana@example.com"), False)]
