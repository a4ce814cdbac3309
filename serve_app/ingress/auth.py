"""Bearer-token checks, made before any endpoint reads its body.

Which token opens what (see :class:`~serve_app.config.AuthConfig`):

=================================  =================================================
control plane, the audit log       control token (always required)
forcing an arm (``X-Bandit-Arm``)  control or QA token
data plane (predict, feedback,     data, QA or control token, with
read side)                         ``protect_data_plane`` (else open)
``/metrics``, ``/docs``            the same, with ``protect_metrics``/``protect_docs``
=================================  =================================================

Tokens are compared in constant time, never logged and never echoed. The audit log names an
actor by the keyed fingerprint of its token (:meth:`~serve_app.ingress.tokens.Keyring.fingerprint`).

Example:
    >>> check_bearer("Bearer s3cret", ["s3cret"], what="control", env="X")
    's3cret'
    >>> check_bearer("Bearer nope", ["s3cret"], what="control", env="X")
    Traceback (most recent call last):
    ...
    serve_app.errors.Forbidden: the bearer token is not accepted
"""

from __future__ import annotations

import hmac
from collections.abc import Sequence

from serve_app.config import AuthConfig
from serve_app.errors import Forbidden, Unauthorized
from serve_app.ingress.tokens import Keyring


def bearer(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, else None."""
    scheme, _, value = (authorization or "").partition(" ")
    value = value.strip()
    return value if scheme.lower() == "bearer" and value else None


def check_bearer(
    authorization: str | None, accepted: Sequence[str | None], *, what: str, env: str
) -> str:
    """Verify an ``Authorization: Bearer ...`` header against the accepted tokens.

    Returns:
        The token that matched.

    Raises:
        Forbidden: no token is configured (the endpoints are disabled) or the token is wrong.
        Unauthorized: no bearer token was sent.
    """
    expected = [token for token in accepted if token]
    if not expected:
        raise Forbidden(f"{what} endpoints are disabled: set {env} to enable them")
    value = bearer(authorization)
    if value is None:
        raise Unauthorized(f"{what} endpoints need 'Authorization: Bearer <token>'")
    sent = value.encode()
    matched = None
    for token in expected:  # every comparison runs, so timing tells nothing
        if hmac.compare_digest(sent, token.encode()):
            matched = token
    if matched is None:
        raise Forbidden("the bearer token is not accepted")
    return matched


class Authenticator:
    """The token checks of one router replica (tokens are read once, at startup)."""

    def __init__(self, auth: AuthConfig, keys: Keyring) -> None:
        self.auth = auth
        self.keys = keys
        self.tokens = auth.tokens()

    def control(self, authorization: str | None) -> str:
        """Require the control token; returns the actor label for the audit log."""
        token = check_bearer(
            authorization, [self.tokens.control], what="control", env=self.auth.control_token_env
        )
        return self.keys.fingerprint(token)

    def force(self, authorization: str | None) -> str:
        """Require the control or QA token (forcing an arm); returns the actor label."""
        token = check_bearer(
            authorization,
            [self.tokens.control, self.tokens.qa],
            what="forcing an arm: these",
            env=f"{self.auth.qa_token_env} or {self.auth.control_token_env}",
        )
        return self.keys.fingerprint(token)

    def data(self, authorization: str | None, *, protected: bool | None = None) -> None:
        """Require a data, QA or control token when the data plane (or, with
        ``protected``, the endpoint) is protected."""
        if not (self.auth.protect_data_plane if protected is None else protected):
            return
        check_bearer(
            authorization,
            [self.tokens.data, self.tokens.qa, self.tokens.control],
            what="prediction and feedback",
            env=self.auth.data_token_env,
        )

    def metrics(self, authorization: str | None) -> None:
        self.data(authorization, protected=self.auth.metrics_protected)

    def docs(self, authorization: str | None) -> None:
        self.data(authorization, protected=self.auth.docs_protected)

    def is_control(self, authorization: str | None) -> bool:
        """Does the request carry the control token? (Never raises.)"""
        value, token = bearer(authorization), self.tokens.control
        return bool(value and token and hmac.compare_digest(value.encode(), token.encode()))
