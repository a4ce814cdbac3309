"""Signed decision ids: round trip, tampering, forgery, expiry."""

from __future__ import annotations

import base64
import json

import pytest

from serve_app.decisions import DecisionToken, sign, verify
from serve_app.errors import ExpiredDecision, ForgedDecision, InvalidDecision

SECRET = bytes(range(32))


def test_round_trip_keeps_every_field():
    token = DecisionToken.issue("exp", 3, "arm-b", 0.123456789, learned=False)
    decoded = verify(sign(token, SECRET), SECRET)
    assert decoded == token
    assert decoded.propensity == 0.123457
    assert decoded.learned is False
    assert verify(sign(DecisionToken.issue("e", 1, "a", 1.0), SECRET), SECRET).learned is True


def test_nonces_are_unique():
    nonces = {DecisionToken.issue("e", 1, "a", 0.5).nonce for _ in range(1000)}
    assert len(nonces) == 1000


def test_tampered_payload_is_forged():
    decision_id = sign(DecisionToken.issue("exp", 1, "a", 0.5), SECRET)
    version, body, signature = decision_id.split(".")
    payload = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    payload["a"] = "b"  # claim the other arm
    forged_body = base64.urlsafe_b64encode(json.dumps(payload).encode()).rstrip(b"=").decode()
    with pytest.raises(ForgedDecision) as caught:
        verify(f"{version}.{forged_body}.{signature}", SECRET)
    assert caught.value.status == 403
    assert caught.value.field == "decision_id"


def test_other_secret_is_forged():
    decision_id = sign(DecisionToken.issue("exp", 1, "a", 0.5), b"another secret")
    with pytest.raises(ForgedDecision):
        verify(decision_id, SECRET)


@pytest.mark.parametrize(
    "garbage",
    [
        "",
        "abc",
        "v1.x",
        "v2.a.b",
        "v1..",
        "v1.a.b.c",
        "v1.\u00e9.x",
        "v1.eyJlIjoidHMifQ.\u00e9\u00e9",
    ],
)
def test_malformed_ids_are_invalid(garbage):
    with pytest.raises((InvalidDecision, ForgedDecision)) as caught:
        verify(garbage, SECRET)
    assert caught.value.status in (400, 403)


def test_signed_garbage_payload_is_invalid_not_a_crash():
    from serve_app.decisions import _b64encode, _signature

    body = _b64encode(b"not json")
    signed = f"v1.{body}"
    with pytest.raises(InvalidDecision):
        verify(f"{signed}.{_signature(SECRET, signed)}", SECRET)


def test_expiry():
    token = DecisionToken("exp", 1, "a", 0.5, issued_at=1000.0, nonce="n")
    token.check_age(60.0, now=1059.0)
    with pytest.raises(ExpiredDecision) as caught:
        token.check_age(60.0, now=1061.0)
    assert caught.value.status == 410
    assert "accepts feedback for 60 s" in caught.value.message
