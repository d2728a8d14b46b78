"""`/v1/me/preferences`: the caller's notification preferences (herald.preferences does the work)."""

from __future__ import annotations

from aws_lambda_powertools.event_handler.router import APIGatewayHttpRouter

from herald.api.auth import caller_id
from herald.api.errors import NotFound
from herald.api.services import services
from herald.preferences import PreferencesDocument, PreferencesService, PreferencesUpdate
from herald.stores.users import PersonErased, UserStore

router = APIGatewayHttpRouter()


def _preferences() -> PreferencesService:
    found = services(router)
    return PreferencesService(UserStore(found.dynamodb, found.tables.users))


@router.get("/me/preferences", summary="The caller's preferences in effect (what routing uses)")
def get_preferences() -> PreferencesDocument:
    return _preferences().get(caller_id(router))


@router.put(
    "/me/preferences",
    summary="Replace the caller's preferences (omitted fields: the product's defaults)",
)
def put_preferences(update: PreferencesUpdate) -> PreferencesDocument:
    user_id = caller_id(router)
    try:
        return _preferences().replace(user_id, update)
    except PersonErased:
        raise NotFound("this person was erased") from None
