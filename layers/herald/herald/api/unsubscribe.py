"""`/v1/unsubscribe?token=…`: the login-free unsubscribe link of marketing mail (RFC 8058, decision 024).

The token (herald.unsubscribe) is signed with the UnsubscribeSigningSecret, names a person and a
category and expires; it is the only credential (no JWT). `GET` shows a small confirmation page whose
button POSTs: it changes nothing, because mail scanners and link previews follow links. `POST` with the
one-click body `List-Unsubscribe=One-Click` (what Gmail, Yahoo and Apple Mail send, form-urlencoded or
multipart) or the page's form opts the person out, as their own choice (decision 016): marketing turns
`marketing_opt_in` off, another category is muted; security and system cannot be (400). Repeating it
changes nothing and answers 200 again; an erased person's link answers 200 and writes nothing. A
missing, altered or expired token is 400 with a page saying so, and nothing is read or written.
"""

from __future__ import annotations

import base64
import hashlib
import time
from email import message_from_bytes
from email.message import Message
from html import escape
from typing import Annotated, Any
from urllib.parse import parse_qsl

from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.params import Query
from aws_lambda_powertools.event_handler.router import APIGatewayHttpRouter

from herald.api.raw_body import raw_body
from herald.api.services import services
from herald.channels.credentials import ProviderUnavailable
from herald.models import Category
from herald.routing.decision import MANDATORY_CATEGORIES
from herald.stores.users import OwnChange, PersonErased, UserStore
from herald.unsubscribe import InvalidUnsubscribeToken, UnsubscribeClaim, verify_token
from herald.users import UserProfile

logger = Logger(child=True)
router = APIGatewayHttpRouter()

HTML = "text/html; charset=utf-8"
TEXT = "text/plain; charset=utf-8"
ONE_CLICK = ("List-Unsubscribe", "One-Click")  # RFC 8058 §3.1: the body a mail client POSTs
CONFIRM = ("confirm", "unsubscribe")  # the confirmation page's button
MAX_BODY = 4096

STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:32rem;margin:3rem auto;padding:0 1rem;"
    "line-height:1.5;color:#1a1a1a;background:#fff}"
    "button{font:inherit;padding:.6rem 1.4rem;border:0;border-radius:.4rem;background:#0b57d0;"
    "color:#fff;cursor:pointer}button:focus-visible{outline:3px solid #1a1a1a;outline-offset:2px}"
)
_STYLE_HASH = base64.b64encode(hashlib.sha256(STYLE.encode()).digest()).decode()
# No scripts, no other origin, the form posts back here only, never framed.
CSP = (
    f"default-src 'none'; style-src 'sha256-{_STYLE_HASH}'; form-action 'self'; "
    "base-uri 'none'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",  # the token is in the URL
}

# -- words ----------------------------------------------------------------------------------------

TEXTS: dict[str, dict[str, str]] = {
    "en": {
        "marketing": "marketing and promotional messages",
        "transactional": "account and order updates",
        "confirm.title": "Unsubscribe",
        "confirm.heading": "Unsubscribe from {category}?",
        "confirm.body": "Press the button to stop receiving {category}. "
        "You can turn them back on in the app's notification settings.",
        "confirm.button": "Unsubscribe",
        "done.title": "You are unsubscribed",
        "done.body": "You will no longer receive {category}. "
        "You can turn them back on in the app's notification settings.",
        "invalid.title": "This unsubscribe link is not valid",
        "invalid.body": "The link is incomplete, altered or expired, so nothing was changed. Use the link "
        "in a more recent email, or change your notification settings in the app.",
        "incomplete.title": "This unsubscribe request is incomplete",
        "incomplete.body": "Nothing was changed. Open the link from the email again and press the button.",
        "mandatory.title": "These messages cannot be turned off",
        "mandatory.body": "Security and account messages keep your account safe, so nothing was changed.",
        "unavailable.title": "Please try again later",
        "unavailable.body": "We could not handle your request just now, so nothing was changed.",
    },
    "es": {
        "marketing": "los mensajes de marketing y promociones",
        "transactional": "los avisos de tu cuenta y tus pedidos",
        "confirm.title": "Cancelar la suscripción",
        "confirm.heading": "¿Dejar de recibir {category}?",
        "confirm.body": "Pulsa el botón para dejar de recibir {category}. "
        "Puedes volver a activarlos en los ajustes de notificaciones de la app.",
        "confirm.button": "Cancelar la suscripción",
        "done.title": "Tu suscripción está cancelada",
        "done.body": "Ya no recibirás {category}. "
        "Puedes volver a activarlos en los ajustes de notificaciones de la app.",
        "invalid.title": "Este enlace para cancelar la suscripción no es válido",
        "invalid.body": "El enlace está incompleto, alterado o caducado, así que no se cambió nada. Usa el "
        "enlace de un correo más reciente o cambia tus ajustes de notificaciones en la app.",
        "incomplete.title": "Esta solicitud está incompleta",
        "incomplete.body": "No se cambió nada. Abre de nuevo el enlace del correo y pulsa el botón.",
        "mandatory.title": "Estos mensajes no se pueden desactivar",
        "mandatory.body": "Los mensajes de seguridad y de la cuenta protegen tu cuenta, así que no se "
        "cambió nada.",
        "unavailable.title": "Inténtalo de nuevo más tarde",
        "unavailable.body": "No pudimos atender tu solicitud en este momento, así que no se cambió nada.",
    },
    "pt": {
        "marketing": "as mensagens de marketing e promoções",
        "transactional": "os avisos da sua conta e dos seus pedidos",
        "confirm.title": "Cancelar inscrição",
        "confirm.heading": "Deixar de receber {category}?",
        "confirm.body": "Toque no botão para deixar de receber {category}. "
        "Você pode reativá-las nas configurações de notificações do app.",
        "confirm.button": "Cancelar inscrição",
        "done.title": "Sua inscrição foi cancelada",
        "done.body": "Você não vai mais receber {category}. "
        "Você pode reativá-las nas configurações de notificações do app.",
        "invalid.title": "Este link de cancelamento não é válido",
        "invalid.body": "O link está incompleto, alterado ou expirado, então nada foi alterado. Use o link "
        "de um e-mail mais recente ou altere suas configurações de notificações no app.",
        "incomplete.title": "Esta solicitação está incompleta",
        "incomplete.body": "Nada foi alterado. Abra de novo o link do e-mail e toque no botão.",
        "mandatory.title": "Estas mensagens não podem ser desativadas",
        "mandatory.body": "As mensagens de segurança e da conta protegem sua conta, então nada foi alterado.",
        "unavailable.title": "Tente novamente mais tarde",
        "unavailable.body": "Não conseguimos atender sua solicitação agora, então nada foi alterado.",
    },
}
DEFAULT_LANGUAGE = "en"


def language(profile_locale: str | None = None) -> str:
    """The page's language: the person's locale (what their mail was written in), else the browser's
    first supported `Accept-Language`, else English."""
    candidates = [profile_locale] if profile_locale else []
    accept = router.current_event.headers.get("Accept-Language") or ""
    ranked = []
    for position, part in enumerate(accept.split(",")[:10]):
        tag, _, params = part.strip().partition(";")
        weight = 1.0
        if params.strip().startswith("q="):
            try:
                weight = float(params.strip()[2:])
            except ValueError:
                weight = 0.0
        if tag and weight > 0:
            ranked.append((-weight, position, tag))
    candidates += [tag for _, _, tag in sorted(ranked)]
    for candidate in candidates:
        primary = candidate.split("-")[0].split("_")[0].lower()
        if primary in TEXTS:
            return primary
    return DEFAULT_LANGUAGE


def _fill(text: str, category: str) -> str:
    """`text` escaped, its `{category}` in bold."""
    before, found, after = text.partition("{category}")
    middle = f"<strong>{escape(category)}</strong>" if found else ""
    return escape(before) + middle + escape(after)


def _page(status: int, lang: str, key: str, category: str | None = None, form: bool = False) -> Response[str]:
    words = TEXTS[lang]
    what = words.get(category or "", category or "")
    title = escape(words[f"{key}.title"])
    heading = _fill(words.get(f"{key}.heading", words[f"{key}.title"]), what)
    paragraph = _fill(words[f"{key}.body"], what)
    button = (
        f'<form method="post"><button type="submit" name="{CONFIRM[0]}" value="{CONFIRM[1]}">'
        f"{escape(words[f'{key}.button'])}</button></form>"
        if form
        else ""
    )
    document = (
        f'<!doctype html>\n<html lang="{lang}"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<meta name="robots" content="noindex">'
        f"<title>{title}</title><style>{STYLE}</style></head>"
        f"<body><main><h1>{heading}</h1><p>{paragraph}</p>{button}</main></body></html>\n"
    )
    return Response(status, HTML, document, headers=dict(SECURITY_HEADERS))


# -- the request ------------------------------------------------------------------------------------


class Refusal(Exception):
    """An answer that changes nothing: a page with its status."""

    def __init__(self, status: int, key: str, category: str | None = None) -> None:
        super().__init__(key)
        self.status, self.key, self.category = status, key, category


def _claim(token: str | None) -> UnsubscribeClaim:
    if not token:
        raise Refusal(400, "invalid")
    try:
        key = services(router).unsubscribe_key()
    except (ProviderUnavailable, ValueError) as error:
        logger.error("unsubscribe secret unreadable: link not verified", extra={"reason": str(error)})
        raise Refusal(503, "unavailable") from None
    try:
        claim = verify_token(key, token, now=time.time())
    except InvalidUnsubscribeToken as error:
        logger.info("unsubscribe link refused", extra={"reason": str(error)})
        raise Refusal(400, "invalid") from None
    try:
        category = Category(claim.category)
    except ValueError:
        logger.warning("signed unsubscribe link of an unknown category", extra={"category": claim.category})
        raise Refusal(400, "invalid") from None
    if category in MANDATORY_CATEGORIES:
        raise Refusal(400, "mandatory", category.value)
    return claim


def _fields(body: bytes, content_type: str) -> set[tuple[str, str]]:
    """The posted form's (name, value) pairs, form-urlencoded or multipart/form-data (RFC 8058 allows
    both)."""
    if len(body) > MAX_BODY:
        return set()
    if content_type.lower().startswith("multipart/form-data"):
        parsed: Message = message_from_bytes(f"Content-Type: {content_type}\r\n\r\n".encode() + body)
        found = set()
        for part in parsed.get_payload() if parsed.is_multipart() else []:
            name = part.get_param("name", header="content-disposition")
            value = part.get_payload(decode=True)
            if isinstance(name, str) and isinstance(value, bytes):
                found.add((name, value.decode("utf-8", "replace").strip()))
        return found
    try:
        return set(parse_qsl(body.decode("utf-8").strip(), keep_blank_values=True))
    except UnicodeDecodeError:
        return set()


def opt_out(users: UserStore, user_id: str, category: Category) -> UserProfile:
    """The person's own choice, as if they set it in the app (decision 016): marketing off, or the
    category muted. Writes nothing when it is so already; raises PersonErased."""

    def edit(own: dict[str, Any], current: UserProfile | None) -> OwnChange:
        preferences = dict(own.get("preferences") or {})
        if category is Category.MARKETING:
            preferences["marketing_opt_in"] = False
        else:
            muted = set(current.preferences.muted_categories) if current else set()
            preferences["muted_categories"] = sorted(c.value for c in muted | {category})
        return OwnChange(choices={**own, "preferences": preferences})

    return users.edit_own(user_id, edit)


def _profile_locale(user_id: str) -> str | None:
    found = services(router)
    profile = UserStore(found.dynamodb, found.tables.users).get_profile(user_id)
    return profile.locale if profile else None


_PAGES = {
    200: {
        "description": "The confirmation page (GET), or `You are unsubscribed` (the page's button).",
        "content": {"text/html": {"schema": {"type": "string"}}},
    },
    400: {
        "description": "The token is missing, altered or expired, or names security / system "
        "notifications (which cannot be turned off), or a POST without the one-click body: a page "
        "saying so; nothing was written.",
        "content": {"text/html": {"schema": {"type": "string"}}},
    },
    503: {
        "description": "The signing key cannot be read now: nothing was written, retry later.",
        "content": {"text/html": {"schema": {"type": "string"}}},
    },
}
TOKEN = Query(description="the signed token of the email's `List-Unsubscribe` link")


@router.get(
    "/unsubscribe",
    summary="The unsubscribe link's confirmation page (no login; changes nothing)",
    description="A small HTML page naming the category, with a button that POSTs to the same URL. "
    "Following the link alone (mail scanners, previews) changes nothing.",
    tags=["unsubscribe"],
    responses=_PAGES,
)
def unsubscribe_page(token: Annotated[str | None, TOKEN] = None) -> Response[str]:
    try:
        claim = _claim(token)
    except Refusal as refusal:
        return _page(refusal.status, language(), refusal.key, refusal.category)
    return _page(200, language(_profile_locale(claim.user_id)), "confirm", claim.category, form=True)


@router.post(
    "/unsubscribe",
    summary="One-click unsubscribe (RFC 8058; no login)",
    description="The body `List-Unsubscribe=One-Click` (form-urlencoded or multipart, as mail clients "
    "send it) or the confirmation page's form opts the token's person out of its category: marketing "
    "turns `marketing_opt_in` off, another category is muted. Idempotent; an erased person's link "
    "answers 200 and writes nothing.",
    tags=["unsubscribe"],
    responses={
        **_PAGES,
        200: {
            "description": "Unsubscribed (or already): `text/plain` for the one-click POST, the "
            "`You are unsubscribed` page for the page's button.",
            "content": {
                "text/plain": {"schema": {"type": "string"}},
                "text/html": {"schema": {"type": "string"}},
            },
        },
    },
)
def unsubscribe(token: Annotated[str | None, TOKEN] = None) -> Response[str]:
    try:
        claim = _claim(token)
        event = router.current_event
        fields = _fields(raw_body(event) or b"", event.headers.get("Content-Type") or "")
        one_click = ONE_CLICK in fields
        if not one_click and CONFIRM not in fields:
            raise Refusal(400, "incomplete", claim.category)
    except Refusal as refusal:
        return _page(refusal.status, language(), refusal.key, refusal.category)
    found = services(router)
    category = Category(claim.category)
    locale = None
    try:
        locale = opt_out(UserStore(found.dynamodb, found.tables.users), claim.user_id, category).locale
    except PersonErased:
        logger.info("unsubscribe link of an erased person: nothing written")
    logger.info("unsubscribed", extra={"category": category.value, "one_click": one_click})
    if one_click:
        return Response(200, TEXT, "You are unsubscribed.\n", headers=dict(SECURITY_HEADERS))
    return _page(200, language(locale), "done", category.value)
