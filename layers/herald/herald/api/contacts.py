"""`/v1/me/contacts`: the caller's email, phone and SMS marketing consent, read and set
(herald.contacts does the work)."""

from __future__ import annotations

from aws_lambda_powertools.event_handler.router import APIGatewayHttpRouter

from herald.api.auth import caller_id
from herald.api.errors import Conflict, ErrorResponse, NotFound, Unprocessable
from herald.api.services import services
from herald.contacts import (
    ConsentSource,
    ContactsDocument,
    ContactsService,
    ContactsUpdate,
    NoPhoneForConsent,
)
from herald.stores.users import ConsentHistoryFull, PersonErased, UserStore

router = APIGatewayHttpRouter()


def _contacts() -> ContactsService:
    found = services(router)
    return ContactsService(UserStore(found.dynamodb, found.tables.users))


def _source() -> ConsentSource:
    event = router.current_event
    return ConsentSource(
        user_agent=event.headers.get("user-agent"), source_ip=event.request_context.http.source_ip
    )


@router.get(
    "/me/contacts",
    summary="The caller's contacts and the SMS marketing consent in force (what routing uses)",
)
def get_contacts() -> ContactsDocument:
    return _contacts().get(caller_id(router))


@router.put(
    "/me/contacts",
    summary="Set the caller's contacts and SMS marketing consent (omitted fields: unchanged)",
    responses={
        200: {
            "description": "The contacts and consent Herald now uses for the caller",
            "content": {"application/json": {"model": ContactsDocument}},
        },
        409: {
            "description": "The consent history is full: no further change can be recorded.",
            "content": {"application/json": {"model": ErrorResponse}},
        },
    },
)
def put_contacts(update: ContactsUpdate) -> ContactsDocument:
    user_id = caller_id(router)
    try:
        return _contacts().update(user_id, update, _source())
    except NoPhoneForConsent as error:
        raise Unprocessable(
            "the request is not valid",
            [{"loc": ["body", "sms_marketing", "granted"], "type": "phone_required", "msg": str(error)}],
        ) from None
    except PersonErased:
        raise NotFound("this person was erased") from None
    except ConsentHistoryFull as error:
        raise Conflict(str(error)) from None
