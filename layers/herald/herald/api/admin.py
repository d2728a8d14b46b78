"""`POST /v1/admin/notifications`: an administrator sends a notification (herald.sends). The route's
JWT authorizer requires the admin scope (`AdminScope`, API Gateway answers 403 without it); the
function checks it again, so a route wired without the scope fails closed."""

from __future__ import annotations

from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler import Response, content_types
from aws_lambda_powertools.event_handler.router import APIGatewayHttpRouter
from pydantic import BaseModel, Field

from herald.api.auth import operator_id
from herald.api.errors import Unprocessable
from herald.api.services import operator_services
from herald.catalog import load_catalog
from herald.sends import ManualSend, SendRefused, describe, publish

router = APIGatewayHttpRouter()
logger = Logger(child=True)


class Accepted(BaseModel):
    event_id: str = Field(description="follow it with `herald trace <event id>`")
    accepted: str = Field(description="what was put on the bus, in words")


@router.post(
    "/admin/notifications",
    summary="Send a notification to a person or an audience (admin scope); it takes the producers' path",
    responses={202: {"description": "On the bus; the event id follows it"}},
)
def send_notification(send: ManualSend) -> Response[Accepted]:
    found = operator_services(router)
    admin = operator_id(router, found.settings.admin_scope)
    try:
        request = send.request(load_catalog())
    except SendRefused as error:
        raise Unprocessable(str(error), [{"loc": ["body"], "type": "catalog", "msg": str(error)}]) from None
    event_id = publish(found.events, found.settings.bus_name, request)
    logger.info("manual send", extra={"event_id": event_id, "by": admin, "what": describe(request)})
    body = Accepted(event_id=event_id, accepted=describe(request))
    return Response(status_code=202, content_type=content_types.APPLICATION_JSON, body=body)
