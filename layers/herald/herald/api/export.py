"""`GET /v1/me/export`: everything Herald holds about the caller (herald.export does the work)."""

from __future__ import annotations

from aws_lambda_powertools.event_handler.router import APIGatewayHttpRouter

from herald.api.auth import caller_id
from herald.api.services import services
from herald.export import Exporter, PersonalData

router = APIGatewayHttpRouter()


def _exporter() -> Exporter:
    found = services(router)
    tables = found.tables
    return Exporter(
        found.dynamodb,
        users=tables.users,
        notifications=tables.notifications,
        presence=tables.presence,
        suppression=tables.suppression,
    )


@router.get("/me/export", summary="Everything Herald holds about the caller (right of access)")
def export() -> PersonalData:
    return _exporter().export(caller_id(router))
