"""Who is calling: the JWT's `sub`, and nothing else (never a path, query or body field).

API Gateway's JWT authorizer has verified the token before the function runs (signature, issuer,
audience, expiry); the function still refuses an event without a subject, so a route wired without
the authorizer by mistake fails closed (401) rather than open.
"""

from __future__ import annotations

from aws_lambda_powertools.event_handler.api_gateway import BaseRouter

from herald.api.errors import Forbidden, Unauthorized

MAX_SUBJECT_LENGTH = 128  # the directory's user_id bound
RESERVED_PREFIX = "#"


def caller_id(router: BaseRouter) -> str:
    claims = router.current_event.request_context.authorizer.jwt_claim or {}
    subject = claims.get("sub")
    if not isinstance(subject, str) or not subject.strip() or len(subject) > MAX_SUBJECT_LENGTH:
        raise Unauthorized("a bearer token with a subject is required")
    if subject.startswith(RESERVED_PREFIX):
        # Herald's own partitions (held requests: `#held#<name>`) are nobody's account.
        raise Unauthorized("this subject cannot be a person in Herald")
    return subject


def token_scopes(router: BaseRouter) -> set[str]:
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


def operator_id(router: BaseRouter, scope: str) -> str:
    """The caller of an operator route (`/v1/admin/...`): their subject, once their token is seen to
    carry `scope`. The route's authorizer requires the scope already (API Gateway answers 403
    without it); checking it again here makes a route wired without it fail closed."""
    caller = caller_id(router)
    if scope not in token_scopes(router):
        raise Forbidden(f"the {scope} scope is required")
    return caller
