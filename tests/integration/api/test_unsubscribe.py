"""`/v1/unsubscribe?token=…` (RFC 8058 one-click, decision 024): the signed link of marketing mail,
through the template's route (no JWT) into the API function, on moto. Tokens are signed with the
stack's own UnsubscribeSigningSecret, as the email sender signs them."""

from __future__ import annotations

import re
import time
from typing import Any
from urllib.parse import urlsplit

import pytest

from herald.stores.dynamo import from_attributes
from herald.stores.users import UserStore
from herald.unsubscribe import make_token, unsubscribe_url
from herald.users import UserProfile
from tests.support.api import Answer, ApiClient
from tests.support.stack import MotoStack

pytestmark = pytest.mark.integration

PATH = "/v1/unsubscribe"
# What Gmail / Yahoo / Apple Mail POST for `List-Unsubscribe-Post: List-Unsubscribe=One-Click`
# (RFC 8058 §3.1): no cookies, no credentials, the one-click body.
ONE_CLICK_BODY = b"List-Unsubscribe=One-Click"
MAIL_CLIENT_HEADERS = {
    "Content-Type": "application/x-www-form-urlencoded",
    "User-Agent": "Mozilla/5.0 (compatible; mail-client-unsubscribe)",
    "Accept": "*/*",
}


def signing_key(stack: MotoStack) -> str:
    arn = stack.secrets["UnsubscribeSigningSecret"]
    return stack.client("secretsmanager").get_secret_value(SecretId=arn)["SecretString"]


def a_person(stack: MotoStack, user_id: str, **fields: Any) -> UserStore:
    users = UserStore(stack.client("dynamodb"), stack.tables["UsersTable"])
    preferences = fields.pop("preferences", {"marketing_opt_in": True})
    users.put_profile(
        UserProfile(user_id=user_id, email=f"{user_id}@example.com", preferences=preferences, **fields)
    )
    return users


def users_table(stack: MotoStack) -> list[dict[str, Any]]:
    items = stack.client("dynamodb").scan(TableName=stack.tables["UsersTable"], ConsistentRead=True)["Items"]
    return sorted((from_attributes(item) for item in items), key=lambda item: (item["pk"], item["sk"]))


def link(stack: MotoStack, user_id: str, category: str = "marketing", **kwargs: Any) -> str:
    """The path + query of the link the email sender would put in `List-Unsubscribe`."""
    token = make_token(signing_key(stack), user_id, category, **kwargs)
    url = urlsplit(unsubscribe_url("https://api.example.com", token))
    return f"{url.path}?{url.query}"


def one_click(api: ApiClient, path: str) -> Answer:
    return api.post(path, user=None, data=ONE_CLICK_BODY, headers=MAIL_CLIENT_HEADERS)


def header(answer: Answer, name: str) -> str | None:
    """A response header, whatever its case (API Gateway's HTTP API answers them in lower case)."""
    return {k.lower(): v for k, v in answer.headers.items()}.get(name.lower())


def text(answer: Answer) -> str:
    return answer.body.decode("utf-8")


def assert_safe_html(answer: Answer) -> None:
    assert header(answer, "Content-Type") == "text/html; charset=utf-8"
    assert header(answer, "Cache-Control") == "no-store"
    assert header(answer, "X-Content-Type-Options") == "nosniff"
    assert header(answer, "Referrer-Policy") == "no-referrer"
    csp = header(answer, "Content-Security-Policy") or ""
    assert "default-src 'none'" in csp and "script-src" not in csp and "'unsafe-inline'" not in csp
    assert "<script" not in text(answer).lower()


# -- one click -------------------------------------------------------------------------------------


def test_a_mail_clients_one_click_post_opts_the_person_out_of_marketing(
    stack: MotoStack, api: ApiClient
) -> None:
    # GIVEN a person who opted in to marketing, and the link of a marketing email to them
    users = a_person(stack, "u-oc")
    path = link(stack, "u-oc")

    # WHEN their mail client POSTs the one-click body to it, with no login
    answer = one_click(api, path)

    # THEN 200, and the person is opted out (as their own choice: the app shows it)
    assert answer.status == 200, answer.body
    assert header(answer, "Cache-Control") == "no-store"
    profile = users.get_profile("u-oc")
    assert profile is not None and profile.preferences.marketing_opt_in is False
    assert api.get("/v1/me/preferences", user="u-oc").json["marketing_opt_in"] is False


def test_a_multipart_one_click_post_is_accepted_too(stack: MotoStack, api: ApiClient) -> None:
    users = a_person(stack, "u-mp")
    body = (
        b"--b0undary\r\n"
        b'Content-Disposition: form-data; name="List-Unsubscribe"\r\n\r\n'
        b"One-Click\r\n"
        b"--b0undary--\r\n"
    )

    answer = api.post(
        link(stack, "u-mp"),
        user=None,
        data=body,
        headers={"Content-Type": "multipart/form-data; boundary=b0undary"},
    )

    assert answer.status == 200, answer.body
    profile = users.get_profile("u-mp")
    assert profile is not None and profile.preferences.marketing_opt_in is False


def test_repeating_the_one_click_post_answers_200_and_writes_nothing_more(
    stack: MotoStack, api: ApiClient
) -> None:
    a_person(stack, "u-rep")
    path = link(stack, "u-rep")
    assert one_click(api, path).status == 200
    after_first = users_table(stack)

    again = one_click(api, path)

    assert again.status == 200
    assert users_table(stack) == after_first  # same revision, same time: nothing written


def test_another_category_is_muted_and_the_others_are_kept(stack: MotoStack, api: ApiClient) -> None:
    users = a_person(stack, "u-tx", preferences={"marketing_opt_in": True, "muted_types": ["order_shipped"]})

    answer = one_click(api, link(stack, "u-tx", "transactional"))

    assert answer.status == 200, answer.body
    profile = users.get_profile("u-tx")
    assert profile is not None
    assert profile.preferences.muted_categories == {"transactional"}
    assert profile.preferences.marketing_opt_in is True
    assert profile.preferences.muted_types == {"order_shipped"}


def test_a_post_without_the_one_click_body_changes_nothing(stack: MotoStack, api: ApiClient) -> None:
    a_person(stack, "u-empty")
    before = users_table(stack)

    answers = [
        api.post(link(stack, "u-empty"), user=None, data=b"", headers=MAIL_CLIENT_HEADERS),
        api.post(
            link(stack, "u-empty"), user=None, data=b"List-Unsubscribe=Yes", headers=MAIL_CLIENT_HEADERS
        ),
    ]

    assert [a.status for a in answers] == [400, 400]
    assert_safe_html(answers[0])
    assert users_table(stack) == before


# -- the page ---------------------------------------------------------------------------------------


def test_following_the_link_changes_nothing_and_shows_a_form_that_posts(
    stack: MotoStack, api: ApiClient
) -> None:
    # GIVEN an opted-in person's link
    a_person(stack, "u-get")
    path = link(stack, "u-get")
    before = users_table(stack)

    # WHEN it is followed (a person, or a mail scanner), twice
    answers = [api.get(path, user=None), api.get(path, user=None)]

    # THEN a small accessible page with a real button that POSTs back, and nothing written
    assert [a.status for a in answers] == [200, 200]
    page = answers[0]
    assert_safe_html(page)
    html = text(page)
    assert re.search(r'<html lang="en">', html)
    assert "<h1>" in html and "marketing and promotional messages" in html
    form = re.search(r'<form method="post">(.*?)</form>', html, re.S)
    assert form and re.search(r'<button type="submit"[^>]*>Unsubscribe</button>', form.group(1))
    assert " action=" not in html  # it posts to the link itself, token included
    assert users_table(stack) == before


def test_the_pages_button_opts_out_and_says_so(stack: MotoStack, api: ApiClient) -> None:
    # GIVEN the page's form (what a browser posts when the button is pressed)
    users = a_person(stack, "u-btn")
    path = link(stack, "u-btn")
    html = text(api.get(path, user=None))
    button = re.search(r'<button type="submit" name="([^"]+)" value="([^"]+)"', html)
    assert button

    # WHEN the button is pressed
    answer = api.post(path, user=None, form={button.group(1): button.group(2)})

    # THEN the person is opted out and the page says so
    assert answer.status == 200, answer.body
    assert_safe_html(answer)
    assert "<h1>You are unsubscribed</h1>" in text(answer)
    profile = users.get_profile("u-btn")
    assert profile is not None and profile.preferences.marketing_opt_in is False


def test_the_page_is_in_the_persons_language(stack: MotoStack, api: ApiClient) -> None:
    a_person(stack, "u-es", locale="es-MX")

    answer = api.get(link(stack, "u-es"), user=None, headers={"Accept-Language": "en-US,en;q=0.9"})

    assert answer.status == 200
    assert '<html lang="es">' in text(answer)
    assert "Cancelar la suscripción" in text(answer)


# -- refused ----------------------------------------------------------------------------------------


def forged(stack: MotoStack) -> dict[str, str]:
    genuine = link(stack, "u-bad").split("token=", 1)[1]
    payload, mac = genuine.split(".")
    other = make_token("not-the-stack-key", "u-bad", "marketing")
    return {
        "missing": PATH,
        "empty": f"{PATH}?token=",
        "expired": link(stack, "u-bad", now=time.time() - 181 * 86400),
        "another key": f"{PATH}?token={other}",
        "tampered": f"{PATH}?token={payload[:-2]}{'AA' if payload[-2:] != 'AA' else 'BB'}.{mac}",
        "garbage": f"{PATH}?token=not-a-token",
    }


@pytest.mark.parametrize("kind", ["missing", "empty", "expired", "another key", "tampered", "garbage"])
def test_a_missing_forged_or_expired_token_is_400_with_a_page_and_writes_nothing(
    stack: MotoStack, api: ApiClient, kind: str
) -> None:
    a_person(stack, "u-bad")
    path = forged(stack)[kind]
    before = users_table(stack)

    answers = [api.get(path, user=None), one_click(api, path)]

    for answer in answers:
        assert answer.status == 400, (kind, answer.body)
        assert_safe_html(answer)
        assert "<h1>This unsubscribe link is not valid</h1>" in text(answer)
    assert users_table(stack) == before


def test_security_notifications_cannot_be_unsubscribed_from(stack: MotoStack, api: ApiClient) -> None:
    a_person(stack, "u-sec")
    path = link(stack, "u-sec", "security")
    before = users_table(stack)

    answers = [api.get(path, user=None), one_click(api, path)]

    assert [a.status for a in answers] == [400, 400]
    assert "cannot be turned off" in text(answers[1])
    assert users_table(stack) == before


def test_an_erased_persons_link_answers_200_and_writes_nothing(stack: MotoStack, api: ApiClient) -> None:
    # GIVEN a person who was erased after the email was sent
    a_person(stack, "u-gone")
    path = link(stack, "u-gone")
    assert api.delete("/v1/me", user="u-gone").status == 204
    before = users_table(stack)

    # WHEN their mail client follows the one-click link
    answer = one_click(api, path)

    # THEN "done" (there is nobody left to mail), and nothing about them is written again
    assert answer.status == 200, answer.body
    assert users_table(stack) == before
