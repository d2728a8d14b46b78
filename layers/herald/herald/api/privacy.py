"""`DELETE /v1/me`: erase the caller (herald.erasure does the work, as for the bus's `UserDeleted`)."""

from __future__ import annotations

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.router import APIGatewayHttpRouter

from herald.api.auth import caller_id
from herald.api.services import services
from herald.erasure import Erasure

router = APIGatewayHttpRouter()


def _erasure() -> Erasure:
    found = services(router)
    return Erasure.for_tables(found.dynamodb, found.tables)


@router.delete(
    "/me",
    summary="Erase everything Herald holds about the caller (idempotent)",
    description="Profile, devices, preferences, consents, inbox and notifications, presence and rate "
    "counters go. Kept: suppression and opt-out entries of the caller's contacts, keyed by a hash "
    "(no plain address), so an erased person is never mailed or texted again. Writes for the caller "
    "are refused from then on, until the product's directory sends a newer `UserUpserted` (decision 017).",
    responses={204: {"description": "Erased (also when there was nothing left to erase)"}},
)
def erase_me() -> Response[None]:
    _erasure().erase(caller_id(router))
    return Response(status_code=204)
