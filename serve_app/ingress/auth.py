"""Bearer-token checks for the control plane (always) and the data plane (by config).

Tokens are compared in constant time and never logged or echoed: the audit log records a
fingerprint (the first 8 hex digits of the token's SHA-256) as the actor.

Example:
    >>> fingerprint("s3cret-token-0123456789")
    'token:706b9b78'
"""

from __future__ import annotations

import hashlib
import hmac

from serve_app.errors import Forbidden, Unauthorized


def fingerprint(token: str) -> str:
    """A stable, non-reversible label for a token, for audit logs."""
    return "token:" + hashlib.sha256(token.encode()).hexdigest()[:8]


def check_bearer(authorization: str | None, expected: str | None, *, what: str, env: str) -> str:
    """Verify an ``Authorization: Bearer ...`` header against the expected token.

    Returns:
        The actor label for the audit log.

    Raises:
        Forbidden: no token is configured (the endpoint is disabled) or the token is wrong.
        Unauthorized: no bearer token was sent.
    """
    if expected is None:
        raise Forbidden(f"{what} endpoints are disabled: set {env} to enable them")
    scheme, _, value = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        raise Unauthorized(f"{what} endpoints need 'Authorization: Bearer <token>'")
    if not hmac.compare_digest(value.strip().encode(), expected.encode()):
        raise Forbidden("the bearer token is not accepted")
    return fingerprint(expected)
