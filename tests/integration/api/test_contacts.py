"""`PUT /v1/me/contacts` through the template's route and JWT authorizer into the API function, on
moto: addresses, the SMS marketing consent and its retrievable proof, suppression kept (decision 016)."""

from __future__ import annotations

import time
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from herald.directory import Directory, UserDeleted, UserUpserted
from herald.stores.keys import email_address
from herald.stores.suppression import SuppressionStore
from herald.stores.users import UserStore
from tests.integration.api.test_preferences import planned, route, steps
from tests.support.api import ApiClient
from tests.support.stack import MotoStack

pytestmark = pytest.mark.integration

PATH = "/v1/me/contacts"


def forged_token(api: ApiClient, user: str = "u1") -> str:
    """Right issuer, audience and key id, signed by another key."""
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    now = int(time.time())
    claims = {"iss": api.issuer.issuer, "aud": api.issuer.audience, "sub": user, "iat": now, "exp": now + 600}
    return jwt.encode(claims, other, algorithm="RS256", headers={"kid": api.issuer.credentials.kid})


def users(stack: MotoStack) -> UserStore:
    return UserStore(stack.client("dynamodb"), stack.tables["UsersTable"])


def error_types(answer: Any) -> dict[tuple[str, ...], str]:
    assert answer.status == 422, answer.json
    assert answer.json["error"]["code"] == "validation_error"
    return {tuple(d["loc"]): d["type"] for d in answer.json["error"]["details"]}


def test_contacts_and_consent_are_set_and_the_proof_is_retrievable(api: ApiClient, stack: MotoStack) -> None:
    answer = api.put(
        PATH,
        json={
            "email": "Ann.Lee@Example.COM",
            "phone": "+1 (415) 555-2671",
            "sms_marketing": {"granted": True, "wording_version": "sms-terms-2026-11"},
        },
        headers={"User-Agent": "ShopApp/4.2 (Android 16)"},
    )

    assert answer.status == 200, answer.json
    body = answer.json
    assert (body["email"], body["phone"]) == ("ann.lee@example.com", "+14155552671")
    assert body["sms_marketing"]["granted"] is True
    assert body["sms_marketing"]["wording_version"] == "sms-terms-2026-11"
    assert body["sms_marketing"]["source"] == "api; user-agent: ShopApp/4.2 (Android 16)"
    profile = users(stack).get_profile("u1")
    assert profile is not None and profile.sms_marketing_consent is not None  # what the SMS path checks
    assert profile.sms_marketing_consent.phone == "+14155552671"  # the one number it covers
    assert body["sms_marketing"]["phone"] == "+14155552671"
    [event] = users(stack).consent_history("u1")
    assert (event.granted, event.phone, event.wording_version) == (True, "+14155552671", "sms-terms-2026-11")
    assert event.user_agent == "ShopApp/4.2 (Android 16)" and event.source_ip


def test_a_new_number_ends_the_consent_until_it_is_granted_for_that_number(
    api: ApiClient, stack: MotoStack
) -> None:
    grant = {"granted": True, "wording_version": "sms-terms-2026-11"}
    assert api.put(PATH, json={"phone": "+1 415 555 2671", "sms_marketing": grant}).status == 200

    moved = api.put(PATH, json={"phone": "+1 415 555 0123"})

    assert moved.status == 200, moved.json
    assert moved.json["phone"] == "+14155550123"
    assert moved.json["sms_marketing"] == {
        "granted": False,
        "given_at": None,
        "wording_version": None,
        "source": None,
        "phone": None,
    }
    profile = users(stack).get_profile("u1")
    assert profile is not None and profile.sms_marketing_consent is None  # the SMS path sees no consent

    again = api.put(PATH, json={"sms_marketing": grant})  # the same wording, for the new number

    assert again.json["sms_marketing"]["granted"] is True
    assert again.json["sms_marketing"]["phone"] == "+14155550123"
    proof = [(c["granted"], c["phone"], c.get("reason")) for c in api.get("/v1/me/export").json["consents"]]
    assert proof == [
        (True, "+14155552671", None),
        (False, "+14155552671", "phone changed"),
        (True, "+14155550123", None),
    ]


@pytest.mark.parametrize(
    ("sent", "e164"),
    [
        ({"phone": "+1 (415) 555-2671"}, "+14155552671"),
        ({"phone": "07911 123456", "region": "GB"}, "+447911123456"),
    ],
)
def test_phone_numbers_are_stored_in_e164(api: ApiClient, stack: MotoStack, sent: dict, e164: str) -> None:
    assert api.put(PATH, json=sent).json["phone"] == e164
    profile = users(stack).get_profile("u1")
    assert profile is not None and profile.phone == e164


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        ({"phone": "4155552671"}, {("body", "phone"): "invalid_phone"}),
        ({"phone": "+44 123"}, {("body", "phone"): "invalid_phone"}),
        ({"email": "ann@@example.com"}, {("body", "email"): "invalid_email"}),
        ({"email": "ann@localhost"}, {("body", "email"): "invalid_email"}),
        (
            {"phone": "+14155552671", "sms_marketing": {"granted": True}},
            {("body", "sms_marketing", "wording_version"): "missing"},
        ),
        (
            {"sms_marketing": {"granted": True, "wording_version": "v1"}},
            {("body", "sms_marketing", "granted"): "phone_required"},
        ),
    ],
)
def test_invalid_contacts_are_422_with_field_errors_and_change_nothing(
    api: ApiClient, stack: MotoStack, document: dict[str, Any], expected: dict
) -> None:
    assert error_types(api.put(PATH, json=document)) == expected
    assert users(stack).get_profile("u1") is None
    assert users(stack).consent_history("u1") == []


def test_no_token_a_forged_one_or_an_expired_one_is_401(api: ApiClient, stack: MotoStack) -> None:
    for token in (None, forged_token(api), api.issuer.token("u1", ttl=-10)):
        answer = api.request("PUT", PATH, user=None, token=token, json={"email": "a@example.com"})
        assert answer.status == 401, (token, answer.json)
    assert api.events == []
    assert users(stack).get_profile("u1") is None


def test_the_token_subject_is_the_only_user_id(api: ApiClient, stack: MotoStack) -> None:
    api.put(PATH, json={"email": "one@example.com"}, user="u1")

    in_body = api.put(PATH, json={"email": "two@example.com", "user_id": "u1"}, user="u2")
    in_query = api.put(PATH, json={"email": "two@example.com"}, query={"user_id": "u1"}, user="u2")

    assert error_types(in_body) == {("body", "user_id"): "extra_forbidden"}
    assert in_query.status == 200
    u1, u2 = users(stack).get_profile("u1"), users(stack).get_profile("u2")
    assert u1 is not None and u1.email == "one@example.com"
    assert u2 is not None and u2.email == "two@example.com"


def test_an_erased_person_cannot_be_recreated_by_their_app(api: ApiClient, stack: MotoStack) -> None:
    directory = Directory(stack.client("dynamodb"), stack.tables["UsersTable"])
    directory.apply(UserUpserted(user_id="u1", version=1, email="ann@example.com"))
    directory.apply(UserDeleted(user_id="u1", version=2))

    answer = api.put(PATH, json={"email": "ann@example.com"})

    assert answer.status == 404
    assert answer.json["error"]["code"] == "not_found"
    assert users(stack).get_profile("u1") is None


def test_changing_an_address_never_lifts_the_suppression_of_the_old_one(
    api: ApiClient, stack: MotoStack
) -> None:
    Directory(stack.client("dynamodb"), stack.tables["UsersTable"]).apply(
        UserUpserted(user_id="42", version=1, email="old@example.com")
    )
    suppression = SuppressionStore(stack.client("dynamodb"), stack.tables["SuppressionTable"])
    suppression.suppress(email_address("old@example.com"), "bounce", "ses")

    assert api.put(PATH, json={"email": "new@example.com"}, user="42").status == 200
    to_new = route(stack, "sec-new", "42", "security_alert")
    assert api.put(PATH, json={"email": "OLD@example.com"}, user="42").status == 200
    back_to_old = route(stack, "sec-old", "42", "security_alert")

    assert planned(to_new)["email"]["to"] == "new@example.com"
    assert "email" not in planned(back_to_old)
    assert ("block", "email") in steps(back_to_old, "suppression")
    assert suppression.is_suppressed(email_address("old@example.com"))
    assert not suppression.is_suppressed(email_address("new@example.com"))


def test_the_contacts_in_force_are_read_back_as_routing_uses_them(api: ApiClient, stack: MotoStack) -> None:
    # GIVEN a person Herald does not know yet
    empty = api.get(PATH, user="newcomer")
    assert empty.status == 200, empty.json
    assert (empty.json["email"], empty.json["phone"], empty.json["sms_marketing"]["granted"]) == (
        None,
        None,
        False,
    )

    # WHEN they set their contacts and agree to marketing texts
    put = api.put(
        PATH,
        user="newcomer",
        json={
            "phone": "+1 415 555 2671",
            "sms_marketing": {"granted": True, "wording_version": "sms-terms-3"},
        },
    )
    assert put.status == 200, put.json

    # THEN a GET answers exactly what the PUT answered, for them only
    mine = api.get(PATH, user="newcomer")
    assert mine.status == 200 and mine.json == put.json
    assert mine.json["sms_marketing"]["wording_version"] == "sms-terms-3"
    assert api.get(PATH, user="someone-else").json["phone"] is None
    assert api.get(PATH, user=None).status == 401
