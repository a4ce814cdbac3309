"""Signed decision ids: the receipt a client returns with its feedback.

A decision id carries everything feedback attribution needs — experiment, revision, arm,
propensity, issue time and a random nonce — and an HMAC-SHA256 over those bytes with one of
the server's signing keys, named by its key id::

    v2.<key id>.<base64url(json payload)>.<base64url(hmac_sha256(key, "v2.<key id>." + payload))>

So a client cannot credit a reward to an arm it was not served (the arm is signed), cannot
replay a decision (the nonce is the store's unique key) and cannot send feedback after the
attribution window (the issue time is signed). Attribution never re-derives the arm from the
unit id: a weight change would then misattribute earlier decisions.

Keys rotate: the :class:`Keyring` signs with its active key and verifies with any key it
holds, so ids signed with the previous key keep verifying until they expire (remove that
key after the longest feedback window). Ids of the first version (``v1.<payload>.<sig>``,
no key id) verify with the key id ``legacy`` when the keyring has it.

Example:
    >>> keys = Keyring({"2026-12": b"k" * 32}, active="2026-12")
    >>> token = DecisionToken("exp", 1, "a", 0.5, issued_at=100.0, nonce="00ff")
    >>> decision_id = keys.sign(token)
    >>> decision_id.split(".")[:2], keys.verify(decision_id) == token
    (['v2', '2026-12'], True)
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass

from serve_app.errors import ExpiredDecision, ForgedDecision, InvalidDecision

VERSION = "v2"
LEGACY_VERSION = "v1"
LEGACY_KEY_ID = "legacy"
_KEY_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


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


def _signature(key: bytes, signed_part: str) -> str:
    return _b64encode(hmac.new(key, signed_part.encode("ascii"), hashlib.sha256).digest())


def _invalid() -> InvalidDecision:
    return InvalidDecision(
        "decision_id is not a decision id issued by /predict", field="decision_id"
    )


class Keyring:
    """Signing keys by id: the active one signs, every one verifies.

    Raises:
        ValueError: no keys, an invalid key id, or ``active`` is not one of the keys.
    """

    def __init__(self, keys: Mapping[str, bytes], active: str) -> None:
        if not keys:
            raise ValueError("a keyring needs at least one key")
        for key_id in keys:
            if not _KEY_ID.match(key_id):
                raise ValueError(f"invalid signing key id {key_id!r}")
        if active not in keys:
            raise ValueError(f"active signing key {active!r} is not one of {sorted(keys)}")
        self._keys = dict(keys)
        self.active = active

    @property
    def key_ids(self) -> list[str]:
        return sorted(self._keys)

    def fingerprint(self, token: str) -> str:
        """A stable label for a bearer token in the audit log: an HMAC with the active key,
        so nobody without the key can test a guessed token against the log."""
        digest = hmac.new(self._keys[self.active], token.encode(), hashlib.sha256).hexdigest()
        return f"token:{digest[:12]}"

    def sign(self, token: DecisionToken) -> str:
        """Serialise and sign a token with the active key."""
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
        signed_part = f"{VERSION}.{self.active}.{body}"
        return f"{signed_part}.{_signature(self._keys[self.active], signed_part)}"

    def verify(self, decision_id: str) -> DecisionToken:
        """Check the signature and decode a decision id.

        Raises:
            InvalidDecision: not a decision id of this format (400).
            ForgedDecision: the signature does not match, or the key is unknown (403).
        """
        if not decision_id.isascii():
            raise _invalid()
        parts = decision_id.split(".")
        if len(parts) == 4 and parts[0] == VERSION:
            key_id, body, signature = parts[1], parts[2], parts[3]
            signed_part = f"{VERSION}.{key_id}.{body}"
        elif len(parts) == 3 and parts[0] == LEGACY_VERSION:
            key_id, body, signature = LEGACY_KEY_ID, parts[1], parts[2]
            signed_part = f"{LEGACY_VERSION}.{body}"
        else:
            raise _invalid()
        key = self._keys.get(key_id)
        if key is None or not hmac.compare_digest(_signature(key, signed_part), signature):
            raise ForgedDecision(
                "decision_id signature does not verify (tampered, not issued here, or signed "
                "with a key this server no longer has)",
                field="decision_id",
            )
        try:
            payload = json.loads(_b64decode(body))
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
