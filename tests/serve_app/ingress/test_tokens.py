"""Signed decision ids: round trip, tampering, forgery, expiry, key rotation."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json

import pytest

from serve_app.errors import ExpiredDecision, ForgedDecision, InvalidDecision
from serve_app.ingress.tokens import LEGACY_KEY_ID, DecisionToken, Keyring

SECRET = bytes(range(32))
KEYS = Keyring({"k1": SECRET}, active="k1")


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def test_round_trip_keeps_every_field():
    token = DecisionToken.issue("exp", 3, "arm-b", 0.123456789, learned=False)
    decoded = KEYS.verify(KEYS.sign(token))
    assert decoded == token
    assert decoded.propensity == 0.123457
    assert decoded.learned is False
    assert KEYS.verify(KEYS.sign(DecisionToken.issue("e", 1, "a", 1.0))).learned is True


def test_nonces_are_unique():
    nonces = {DecisionToken.issue("e", 1, "a", 0.5).nonce for _ in range(1000)}
    assert len(nonces) == 1000


def test_tampered_payload_is_forged():
    decision_id = KEYS.sign(DecisionToken.issue("exp", 1, "a", 0.5))
    version, key_id, body, signature = decision_id.split(".")
    payload = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    payload["a"] = "b"  # claim the other arm
    with pytest.raises(ForgedDecision) as caught:
        KEYS.verify(f"{version}.{key_id}.{b64(json.dumps(payload).encode())}.{signature}")
    assert caught.value.status == 403
    assert caught.value.field == "decision_id"


def test_other_key_or_unknown_key_id_is_forged():
    other = Keyring({"k1": b"another secret" * 3}, active="k1")
    with pytest.raises(ForgedDecision):
        KEYS.verify(other.sign(DecisionToken.issue("exp", 1, "a", 0.5)))
    stranger = Keyring({"k9": SECRET}, active="k9")  # same bytes, a key id we do not hold
    with pytest.raises(ForgedDecision):
        KEYS.verify(stranger.sign(DecisionToken.issue("exp", 1, "a", 0.5)))


def test_rotation_old_ids_verify_new_ids_use_the_new_key():
    old = Keyring({"2026-11": b"o" * 32}, active="2026-11")
    issued_before = old.sign(DecisionToken.issue("exp", 1, "a", 0.5))
    rotated = Keyring({"2026-11": b"o" * 32, "2026-12": b"n" * 32}, active="2026-12")
    assert rotated.verify(issued_before).arm == "a"
    issued_after = rotated.sign(DecisionToken.issue("exp", 1, "b", 0.5))
    assert issued_after.split(".")[1] == "2026-12"
    with pytest.raises(ForgedDecision):
        old.verify(issued_after)
    retired = Keyring({"2026-12": b"n" * 32}, active="2026-12")  # the old key removed
    with pytest.raises(ForgedDecision):
        retired.verify(issued_before)


def test_first_version_ids_verify_with_the_legacy_key():
    payload = b64(json.dumps({"e": "exp", "r": 1, "a": "a", "p": 0.5, "t": 1.0, "n": "x"}).encode())
    signature = b64(hmac.new(SECRET, f"v1.{payload}".encode(), hashlib.sha256).digest())
    legacy_id = f"v1.{payload}.{signature}"
    with_legacy = Keyring({"k1": b"z" * 32, LEGACY_KEY_ID: SECRET}, active="k1")
    assert with_legacy.verify(legacy_id).nonce == "x"
    with pytest.raises(ForgedDecision):
        KEYS.verify(legacy_id)


@pytest.mark.parametrize(
    "garbage",
    ["", "abc", "v2.x", "v2.a.b", "v1..", "v2.k1.a.b.c", "v2.k1.\u00e9.x", "v9.a.b.c"],
)
def test_malformed_ids_are_invalid(garbage):
    with pytest.raises((InvalidDecision, ForgedDecision)) as caught:
        KEYS.verify(garbage)
    assert caught.value.status in (400, 403)


def test_signed_garbage_payload_is_invalid_not_a_crash():
    body = b64(b"not json")
    signed = f"v2.k1.{body}"
    signature = b64(hmac.new(SECRET, signed.encode(), hashlib.sha256).digest())
    with pytest.raises(InvalidDecision):
        KEYS.verify(f"{signed}.{signature}")


def test_keyring_validates_its_keys():
    with pytest.raises(ValueError, match="at least one key"):
        Keyring({}, active="k1")
    with pytest.raises(ValueError, match="is not one of"):
        Keyring({"k1": SECRET}, active="k2")
    with pytest.raises(ValueError, match="invalid signing key id"):
        Keyring({"../k": SECRET}, active="../k")


def test_expiry():
    token = DecisionToken("exp", 1, "a", 0.5, issued_at=1000.0, nonce="n")
    token.check_age(60.0, now=1059.0)
    with pytest.raises(ExpiredDecision) as caught:
        token.check_age(60.0, now=1061.0)
    assert caught.value.status == 410
    assert "accepts feedback for 60 s" in caught.value.message
