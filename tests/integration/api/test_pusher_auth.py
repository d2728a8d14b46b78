"""`POST /v1/pusher/auth` through the template's route and JWT authorizer, on moto: pusher-js's
form-urlencoded request, the pusher SDK's answer, signed with the Pusher secret the stack holds."""

from __future__ import annotations

import hashlib
import hmac
import json

import pusher
import pytest

from tests.support.api import Answer, ApiClient, api_credentials
from tests.support.stack import MotoStack

pytestmark = pytest.mark.integration

PATH = "/v1/pusher/auth"
SOCKET = "123456.7890123"


def authorize(api: ApiClient, channel: str, *, user: str | None = "u1", socket_id: str = SOCKET) -> Answer:
    """As pusher-js asks: a form-urlencoded POST of socket_id and channel_name."""
    return api.post(PATH, user=user, form={"socket_id": socket_id, "channel_name": channel})


def content_type(answer: Answer) -> str:
    return {name.lower(): value for name, value in answer.headers.items()}.get("content-type", "")


def independent_signature(text: str) -> str:
    secret = api_credentials().pusher.secret
    return hmac.new(secret.encode(), text.encode(), hashlib.sha256).hexdigest()


def sdk() -> pusher.Pusher:
    credentials = api_credentials().pusher
    return pusher.Pusher(app_id=credentials.app_id, key=credentials.key, secret=credentials.secret)


# -- the caller's own channels ----------------------------------------------------------------------


def test_the_callers_private_channel_is_signed_as_the_sdk_signs_it(api: ApiClient) -> None:
    # WHEN pusher-js asks to subscribe the signed-in user to their own private channel
    answer = authorize(api, "private-user-u1")

    # THEN the answer is the SDK's, an HMAC-SHA256 of socket_id:channel under the stack's Pusher secret
    assert answer.status == 200
    assert content_type(answer).startswith("application/json")
    key, signature = answer.json["auth"].split(":")
    assert key == api_credentials().pusher.key
    assert hmac.compare_digest(signature, independent_signature(f"{SOCKET}:private-user-u1"))
    assert answer.json == sdk().authenticate("private-user-u1", SOCKET)


def test_the_callers_presence_channel_carries_their_user_id_as_channel_data(api: ApiClient) -> None:
    # WHEN pusher-js asks for the caller's presence channel (it sends no channel_data of its own)
    answer = authorize(api, "presence-user-u1", user="u1")

    # THEN Herald builds the member data from the token's subject and signs it with the channel
    assert answer.status == 200
    assert set(answer.json) == {"auth", "channel_data"}
    assert json.loads(answer.json["channel_data"]) == {"user_id": "u1"}
    key, signature = answer.json["auth"].split(":")
    assert key == api_credentials().pusher.key
    signed = f"{SOCKET}:presence-user-u1:{answer.json['channel_data']}"
    assert hmac.compare_digest(signature, independent_signature(signed))
    assert answer.json == sdk().authenticate("presence-user-u1", SOCKET, {"user_id": "u1"})


def test_the_channel_is_the_tokens_subject_not_a_field_of_the_request(api: ApiClient) -> None:
    # GIVEN a request that smuggles channel_data for another user
    answer = api.post(
        PATH,
        user="u1",
        form={"socket_id": SOCKET, "channel_name": "presence-user-u1", "channel_data": '{"user_id":"u2"}'},
    )

    # THEN the member data is still the caller's
    assert answer.status == 200
    assert json.loads(answer.json["channel_data"]) == {"user_id": "u1"}


# -- every other channel ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "channel",
    [
        "private-user-u2",  # another person's private channel
        "presence-user-u2",  # another person's presence channel
        "orders",  # a public channel
        "private-orders",  # a private channel that is nobody's
        "private-encrypted-user-u1",  # not a channel Herald uses
        "private-user-u1x",  # a prefix match is not the channel
        "private-user-",
        "private-user-u1 ",  # malformed
        "private-user-u1,private-user-u2",
    ],
)
def test_any_other_channel_is_403_in_the_one_error_shape(api: ApiClient, channel: str) -> None:
    answer = authorize(api, channel, user="u1")

    assert answer.status == 403
    assert answer.json["error"]["code"] == "forbidden"
    assert "auth" not in answer.json


def test_user_a_cannot_authorize_user_bs_channel_but_b_can(api: ApiClient) -> None:
    assert authorize(api, "private-user-bea", user="ana").status == 403
    assert authorize(api, "private-user-bea", user="bea").status == 200


def test_a_subject_outside_pushers_channel_alphabet_has_no_channel_to_sign(api: ApiClient) -> None:
    # GIVEN a subject with a character Pusher refuses in channel names (an Auth0-style `auth0|…`)
    # WHEN that person asks for the channel their subject names
    answer = authorize(api, "private-user-auth0|42", user="auth0|42")

    # THEN nothing is signed: Pusher would refuse the subscription anyway
    assert answer.status == 403
    assert answer.json["error"]["code"] == "forbidden"


# -- the request ------------------------------------------------------------------------------------


@pytest.mark.parametrize("socket_id", ["abc", "123", "123.456.789", "1.2:private-user-u2", "-1.2"])
def test_a_malformed_socket_id_is_a_422_field_error(api: ApiClient, socket_id: str) -> None:
    answer = authorize(api, "private-user-u1", socket_id=socket_id)

    assert answer.status == 422
    assert answer.json["error"]["code"] == "validation_error"
    assert [detail["loc"] for detail in answer.json["error"]["details"]] == [["body", "socket_id"]]
    assert socket_id not in answer.body.decode()  # no echo of the input


@pytest.mark.parametrize("missing", ["socket_id", "channel_name"])
def test_a_missing_field_is_a_422_field_error(api: ApiClient, missing: str) -> None:
    form = {"socket_id": SOCKET, "channel_name": "private-user-u1"}
    del form[missing]

    answer = api.post(PATH, user="u1", form=form)

    assert answer.status == 422
    assert ["body", missing] in [detail["loc"] for detail in answer.json["error"]["details"]]


@pytest.mark.parametrize("credentials", ["none", "expired"])
def test_without_a_valid_token_it_is_401_and_the_function_never_runs(
    api: ApiClient, credentials: str
) -> None:
    token = api.issuer.token("u1", ttl=-10) if credentials == "expired" else None

    form = {"socket_id": SOCKET, "channel_name": "private-user-u1"}
    answer = api.request("POST", PATH, user=None, token=token, form=form)

    assert answer.status == 401
    assert api.events == []


def test_unreadable_pusher_credentials_are_503_in_the_one_error_shape(
    api: ApiClient, stack: MotoStack
) -> None:
    # GIVEN a Pusher secret without its secret key (a botched rotation), read on first use
    stack.client("secretsmanager").put_secret_value(
        SecretId=stack.secrets["PusherSecret"],
        SecretString=json.dumps({"app_id": "1", "key": "k"}),
    )

    answer = authorize(api, "private-user-u1")

    assert answer.status == 503
    assert answer.json["error"]["code"] == "unavailable"
    assert "auth" not in answer.json
