"""Who is calling: the JWT's `sub`, and nothing else (never a path, query or body field).

API Gateway's JWT authorizer has verified the token before the function runs (signature, issuer,
audience, expiry); the function still refuses an event without a subject, so a route wired without
the authorizer by mistake fails closed (401) rather than open.
"""

from __future__ import annotations

from aws_lambda_powertools.event_handler.api_gateway import BaseRouter

from herald.api.errors import Unauthorized

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
