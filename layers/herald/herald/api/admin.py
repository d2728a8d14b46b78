"""`POST /v1/admin/notifications`: an administrator sends a notification (herald.sends). The route's
JWT authorizer requires the admin scope (`AdminScope`, API Gateway answers 403 without it); the
function checks it again, so a route wired without the scope fails closed."""

from __future__ import annotations

from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler import Response, content_types
from aws_lambda_powertools.event_handler.router import APIGatewayHttpRouter
from pydantic import BaseModel, Field

from herald.api.auth import caller_id
from herald.api.errors import Forbidden, Unprocessable
from herald.api.services import services
from herald.catalog import load_catalog
from herald.sends import ManualSend, SendRefused, describe, publish

router = APIGatewayHttpRouter()
logger = Logger(child=True)


class Accepted(BaseModel):
    event_id: str = Field(description="follow it with `herald trace <event id>`")
    accepted: str = Field(description="what was put on the bus, in words")


def _scopes() -> set[str]:
    """The token's scopes as API Gateway matched them (`jwt.scopes` of a scoped route); else the
    `scope` / `scp` claim, which API Gateway hands over as a string (an array as `[a b]`)."""
    authorizer = router.current_event.request_context.authorizer
    if authorizer.jwt_scopes:
        return {str(s) for s in authorizer.jwt_scopes}
    claims = authorizer.jwt_claim or {}
    raw = claims.get("scope", claims.get("scp", ""))
    if isinstance(raw, list):
        return {str(s) for s in raw}
    return set(str(raw).strip("[]").replace(",", " ").split())


@router.post(
    "/admin/notifications",
    summary="Send a notification to a person or an audience (admin scope); it takes the producers' path",
    responses={202: {"description": "On the bus; the event id follows it"}},
)
def send_notification(send: ManualSend) -> Response[Accepted]:
    admin = caller_id(router)
    found = services(router)
    if found.settings.admin_scope not in _scopes():
        raise Forbidden(f"the {found.settings.admin_scope} scope is required")
    try:
        request = send.request(load_catalog())
    except SendRefused as error:
        raise Unprocessable(str(error), [{"loc": ["body"], "type": "catalog", "msg": str(error)}]) from None
    event_id = publish(found.events, found.settings.bus_name, request)
    logger.info("manual send", extra={"event_id": event_id, "by": admin, "what": describe(request)})
    body = Accepted(event_id=event_id, accepted=describe(request))
    return Response(status_code=202, content_type=content_types.APPLICATION_JSON, body=body)
