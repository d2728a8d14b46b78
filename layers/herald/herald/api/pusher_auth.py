"""`POST /v1/pusher/auth`: pusher-js's channel authorization endpoint (JWT).

pusher-js POSTs `socket_id` and `channel_name` form-urlencoded when the app subscribes to a
private or presence channel; the answer is exactly what the pusher SDK's `authenticate` returns
(`{"auth": "<key>:<hex HMAC-SHA256>"}`, plus `channel_data` on a presence channel), which pusher-js
forwards verbatim to Pusher.

The caller may subscribe to their own channels only (the user id is the JWT's `sub`, never a
field of the request):
- `private-user-<sub>`: the channel the realtime sender triggers and whose occupancy Pusher's
  webhooks report;
- `presence-user-<sub>`: the same person's presence channel (one member per signed-in user; the
  members are that user's sockets, so `member_added` / `member_removed` report them). Herald builds
  `channel_data` itself, `{"user_id": <sub>}` and nothing else: pusher-js does not send it, and
  nothing about the person (name, email) is handed to Pusher.

Every other channel name (another person's, a public or unknown one, an encrypted one, a malformed
one) is 403: a channel name is not a stored resource, so the "another person's ids → 404" rule of
the `/v1/me` routes does not apply. A malformed `socket_id` (the SDK's own check) is 422.
"""

from __future__ import annotations

from typing import Annotated, NotRequired, TypedDict

from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler.openapi.params import Form
from aws_lambda_powertools.event_handler.router import APIGatewayHttpRouter

from herald.api.auth import caller_id
from herald.api.errors import Forbidden, Unavailable, Unprocessable
from herald.api.services import services
from herald.channels.credentials import ProviderUnavailable
from herald.channels.realtime_delivery import user_channel

logger = Logger(child=True)
router = APIGatewayHttpRouter()

PRESENCE_PREFIX = "presence-user-"
MAX_SOCKET_ID_LENGTH = 64  # Pusher's are "<digits>.<digits>"
MAX_CHANNEL_NAME_LENGTH = 200  # the SDK's own bound (Pusher's is 164)


_ERROR = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}}


class ChannelAuth(TypedDict):
    """The pusher SDK's `authenticate` answer, as pusher-js expects it."""

    auth: str  # "<app key>:<hex HMAC-SHA256 of socket_id:channel[:channel_data]>"
    channel_data: NotRequired[str]  # presence channels only: JSON {"user_id": <sub>}


def presence_channel(user_id: str) -> str:
    return f"{PRESENCE_PREFIX}{user_id}"


def channel_data_for(user_id: str, channel_name: str) -> dict[str, str] | None:
    """What the caller may sign for `channel_name`: None for their private channel, their presence
    member data for their presence channel; Forbidden for any other channel."""
    if channel_name == user_channel(user_id):
        return None
    if channel_name == presence_channel(user_id):
        return {"user_id": user_id}
    raise Forbidden("you may only subscribe to your own private-user or presence-user channel")


@router.post(
    "/pusher/auth",
    summary="Authorize a Pusher channel subscription (pusher-js's channel authorization endpoint)",
    responses={
        200: {
            "description": "What pusher-js forwards to Pusher",
            "content": {"application/json": {"model": ChannelAuth}},
        },
        403: {
            "description": "Not the caller's channel (only `private-user-<sub>`, `presence-user-<sub>`).",
            "content": _ERROR,
        },
        503: {
            "description": "The Pusher credentials are unreadable right now: retry later.",
            "content": _ERROR,
        },
    },
)
def authorize_channel(
    socket_id: Annotated[str, Form(min_length=1, max_length=MAX_SOCKET_ID_LENGTH)],
    channel_name: Annotated[str, Form(min_length=1, max_length=MAX_CHANNEL_NAME_LENGTH)],
) -> ChannelAuth:
    from pusher.util import validate_socket_id  # the SDK on the first Pusher request (decision 031)

    user_id = caller_id(router)
    try:
        validate_socket_id(socket_id)
    except ValueError:
        raise Unprocessable(
            "the request is not valid",
            [{"loc": ["body", "socket_id"], "type": "value_error", "msg": "Invalid socket ID"}],
        ) from None
    custom_data = channel_data_for(user_id, channel_name)
    try:
        app = services(router).pusher.get()
    except ProviderUnavailable:
        logger.exception("Pusher credentials unreadable: channel authorization refused")
        raise Unavailable("realtime is unavailable right now: retry later") from None
    try:
        signed = app.authenticate(channel_name, socket_id, custom_data)
    except ValueError:
        # The caller's own channel, but a name Pusher refuses (a subject with characters outside
        # Pusher's channel alphabet, e.g. `auth0|123`): no subscription to it can ever succeed.
        logger.warning("the caller's channel is not a valid Pusher channel name")
        raise Forbidden("this account has no valid Pusher channel name") from None
    return signed  # the SDK's answer, unchanged
