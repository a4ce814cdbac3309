"""Signed decision ids: the receipt a client returns with its feedback.

A decision id carries everything feedback attribution needs — experiment, revision, arm,
propensity, issue time and a random nonce — and an HMAC-SHA256 over those bytes with a server
secret::

    v1.<base64url(json payload)>.<base64url(hmac_sha256(secret, "v1." + payload))>

So a client cannot credit a reward to an arm it was not served (the arm is signed), cannot
replay a decision (the nonce is the store's unique key) and cannot send feedback after the
attribution window (the issue time is signed). Attribution never re-derives the arm from the
unit id: a weight change would then misattribute earlier decisions.

Example:
    >>> secret = b"k" * 32
    >>> token = DecisionToken("exp", 1, "a", 0.5, issued_at=100.0, nonce="00ff")
    >>> verify(sign(token, secret), secret) == token
    True
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass

from serve_app.errors import ExpiredDecision, ForgedDecision, InvalidDecision

VERSION = "v1"


@dataclass(frozen=True, slots=True)
class DecisionToken:
    """What one routing decision committed to.

    ``learned`` is False when the policy did not choose the arm with the logged propensity —
    a fallback answer by the default arm, a forced arm, an experiment that is paused or
    concluded — so its feedback is stored but kept out of the bandit's learning.
    """

    experiment: str
    revision: int
    arm: str
    propensity: float
    issued_at: float
    nonce: str
    learned: bool = True

    @classmethod
    def issue(
        cls, experiment: str, revision: int, arm: str, propensity: float, *, learned: bool = True
    ) -> DecisionToken:
        """A new token with the current time and a 96-bit random nonce."""
        # Rounded as serialised, so a verified token equals the issued one.
        return cls(
            experiment,
            revision,
            arm,
            round(propensity, 6),
            round(time.time(), 3),
            secrets.token_hex(12),
            learned,
        )

    def check_age(self, window_s: float, *, now: float | None = None) -> None:
        """Raise :class:`ExpiredDecision` when feedback comes after the attribution window."""
        age = (time.time() if now is None else now) - self.issued_at
        if age > window_s:
            raise ExpiredDecision(
                f"decision_id was issued {age:.0f} s ago; experiment {self.experiment!r} "
                f"accepts feedback for {window_s:.0f} s",
                field="decision_id",
            )


def _b64encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _b64decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _signature(secret: bytes, signed_part: str) -> str:
    return _b64encode(hmac.new(secret, signed_part.encode("ascii"), hashlib.sha256).digest())


def sign(token: DecisionToken, secret: bytes) -> str:
    """Serialise and sign a token."""
    payload = {
        "e": token.experiment,
        "r": token.revision,
        "a": token.arm,
        "p": round(token.propensity, 6),
        "t": round(token.issued_at, 3),
        "n": token.nonce,
    }
    if not token.learned:
        payload["l"] = 0
    body = _b64encode(json.dumps(payload, separators=(",", ":")).encode())
    signed_part = f"{VERSION}.{body}"
    return f"{signed_part}.{_signature(secret, signed_part)}"


def verify(decision_id: str, secret: bytes) -> DecisionToken:
    """Check the signature and decode a decision id.

    Raises:
        InvalidDecision: not a decision id of this format (400).
        ForgedDecision: the signature does not match the payload (403).
    """
    parts = decision_id.split(".")
    if not decision_id.isascii() or len(parts) != 3 or parts[0] != VERSION:
        raise InvalidDecision(
            "decision_id is not a decision id issued by /predict", field="decision_id"
        )
    signed_part = f"{parts[0]}.{parts[1]}"
    if not hmac.compare_digest(_signature(secret, signed_part), parts[2]):
        raise ForgedDecision(
            "decision_id signature does not verify (tampered or not issued here)",
            field="decision_id",
        )
    try:
        payload = json.loads(_b64decode(parts[1]))
        return DecisionToken(
            experiment=str(payload["e"]),
            revision=int(payload["r"]),
            arm=str(payload["a"]),
            propensity=float(payload["p"]),
            issued_at=float(payload["t"]),
            nonce=str(payload["n"]),
            learned=bool(payload.get("l", 1)),
        )
    except (ValueError, KeyError, TypeError, binascii.Error) as error:
        # A valid signature over a bad payload means a key leak or a bug: still only a 400.
        raise InvalidDecision(
            f"decision_id payload is unreadable: {error}", field="decision_id"
        ) from None
