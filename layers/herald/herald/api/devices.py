"""`/v1/me/devices/{token}`: the caller's push devices (herald.devices does the work)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal
from urllib.parse import unquote

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.params import Path
from aws_lambda_powertools.event_handler.router import APIGatewayHttpRouter
from pydantic import BaseModel, ConfigDict, Field, field_validator

from herald.api.auth import caller_id
from herald.api.errors import NotFound, Unprocessable
from herald.api.services import services
from herald.devices import MAX_TOKEN_LENGTH, Devices, InvalidToken, check_token
from herald.rendering import normalize_locale
from herald.stores.users import PersonErased

router = APIGatewayHttpRouter()


class DeviceRegistration(BaseModel):
    """What the app knows about the device: its platform, and optionally its version and language."""

    model_config = ConfigDict(extra="forbid")

    platform: Literal["android", "ios", "web"]
    app_version: str | None = Field(default=None, min_length=1, max_length=64, examples=["4.2.0 (311)"])
    locale: str | None = Field(
        default=None, max_length=35, description="BCP 47 (`pt-BR`)", examples=["pt-BR"]
    )

    @field_validator("locale")
    @classmethod
    def _locale(cls, locale: str | None) -> str | None:
        if locale is None:
            return None
        normalized = normalize_locale(locale)
        if normalized is None:
            raise ValueError("not a BCP 47 language tag (e.g. en, pt-BR)")
        return normalized


class DeviceOut(BaseModel):
    platform: Literal["android", "ios", "web"]
    app_version: str | None
    locale: str | None
    registered_at: datetime = Field(description="this registration (each PUT refreshes it)")


def _devices() -> Devices:
    found = services(router)
    return Devices(found.dynamodb, found.tables.users)


def _token(raw: str) -> str:
    """The path segment as the app sent it: percent-decoded (API Gateway leaves rawPath encoded)."""
    try:
        return check_token(unquote(raw, errors="strict"))
    except (InvalidToken, UnicodeDecodeError) as error:
        message = str(error) if isinstance(error, InvalidToken) else "not a device token"
        raise Unprocessable(
            message, [{"loc": ["path", "token"], "type": "invalid_token", "msg": message}]
        ) from None


Token = Annotated[
    str,
    Path(
        min_length=1,
        max_length=3 * MAX_TOKEN_LENGTH,  # percent-encoded
        description=f"the push token (FCM registration token, APNs device token), up to {MAX_TOKEN_LENGTH} "
        "characters, percent-encoded as a path segment",
    ),
]


@router.put(
    "/me/devices/<token>",
    summary="Register the caller's device (idempotent); a token another person held moves to the caller",
)
def put_device(token: Token, registration: DeviceRegistration) -> DeviceOut:
    user_id = caller_id(router)
    try:
        device = _devices().register(
            user_id,
            _token(token),
            registration.platform,
            app_version=registration.app_version,
            locale=registration.locale,
        )
    except PersonErased:
        raise NotFound("the caller was erased") from None
    return DeviceOut(
        platform=device.platform,  # type: ignore[arg-type]
        app_version=device.app_version,
        locale=device.locale,
        registered_at=device.registered_at,
    )


@router.delete(
    "/me/devices/<token>",
    summary="Remove the caller's device (idempotent)",
    responses={204: {"description": "Removed (or removed before by the caller)"}},
)
def delete_device(token: Token) -> Response[None]:
    user_id = caller_id(router)
    try:
        removed = _devices().remove(user_id, _token(token))
    except PersonErased:
        removed = False
    if not removed:
        raise NotFound("no such device")
    return Response(status_code=204)
