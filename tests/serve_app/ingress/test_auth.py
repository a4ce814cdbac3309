"""Bearer-token checks: 401 without a token, 403 with a wrong one or none configured; which
token opens which door; keyed fingerprints."""

from __future__ import annotations

import pytest

from serve_app.config import AuthConfig
from serve_app.errors import Forbidden, Unauthorized
from serve_app.ingress.auth import Authenticator, check_bearer
from serve_app.ingress.tokens import Keyring

CONTROL = "c" * 40
DATA = "d" * 40
QA = "q" * 40
KEYS = Keyring({"k1": b"s" * 32}, active="k1")


def bearer(token: str) -> str:
    return f"Bearer {token}"


def test_valid_token_is_returned():
    assert check_bearer(bearer(CONTROL), [CONTROL], what="control", env="X") == CONTROL
    assert check_bearer(f"bearer  {CONTROL} ", [None, CONTROL], what="control", env="X") == CONTROL


@pytest.mark.parametrize("header", [None, "", "Bearer", "Bearer ", f"Basic {CONTROL}", CONTROL])
def test_missing_token_is_401(header):
    with pytest.raises(Unauthorized) as caught:
        check_bearer(header, [CONTROL], what="control", env="X")
    assert caught.value.status == 401


def test_wrong_token_is_403_and_not_echoed():
    with pytest.raises(Forbidden) as caught:
        check_bearer("Bearer guess", [CONTROL], what="control", env="X")
    assert caught.value.status == 403
    assert "guess" not in caught.value.message
    assert CONTROL not in caught.value.message


def test_unconfigured_token_disables_the_endpoints():
    with pytest.raises(Forbidden, match="set BANDIT_SERVE_CONTROL_TOKEN"):
        check_bearer(bearer(CONTROL), [None], what="control", env="BANDIT_SERVE_CONTROL_TOKEN")


def test_each_token_opens_its_doors():
    auth = Authenticator(
        AuthConfig(control_token=CONTROL, data_token=DATA, qa_token=QA, protect_data_plane=True),
        KEYS,
    )
    assert auth.control(bearer(CONTROL)).startswith("token:")
    for token in (DATA, QA):
        with pytest.raises(Forbidden):
            auth.control(bearer(token))
    assert auth.force(bearer(QA)) != auth.force(bearer(CONTROL))
    with pytest.raises(Forbidden):
        auth.force(bearer(DATA))  # the data token cannot force an arm
    for token in (DATA, QA, CONTROL):
        auth.data(bearer(token))
    with pytest.raises(Unauthorized):
        auth.data(None)
    assert auth.is_control(bearer(CONTROL))
    assert not auth.is_control(bearer(DATA))
    assert not auth.is_control(None)


def test_an_open_data_plane_still_protects_forcing_metrics_and_docs_on_request():
    open_auth = Authenticator(AuthConfig(control_token=CONTROL), KEYS)
    open_auth.data(None)
    open_auth.metrics(None)
    with pytest.raises(Unauthorized):
        open_auth.force(None)
    guarded = Authenticator(
        AuthConfig(control_token=CONTROL, protect_metrics=True, protect_docs=True), KEYS
    )
    guarded.data(None)
    for check in (guarded.metrics, guarded.docs):
        with pytest.raises(Unauthorized):
            check(None)
        check(bearer(CONTROL))
    # null follows the data plane
    protected = Authenticator(AuthConfig(data_token=DATA, protect_data_plane=True), KEYS)
    with pytest.raises(Unauthorized):
        protected.metrics(None)


def test_fingerprints_are_keyed():
    other = Keyring({"k1": b"t" * 32}, active="k1")
    assert KEYS.fingerprint(CONTROL) != other.fingerprint(CONTROL)
    assert KEYS.fingerprint(CONTROL) == KEYS.fingerprint(CONTROL)
    assert CONTROL not in KEYS.fingerprint(CONTROL)
    # not the unsalted hash prefix an attacker could compute from a guessed token
    import hashlib

    assert hashlib.sha256(CONTROL.encode()).hexdigest()[:8] not in KEYS.fingerprint(CONTROL)


def test_short_tokens_from_the_environment_are_refused(monkeypatch):
    from serve_app.errors import ConfigError

    monkeypatch.setenv("BANDIT_SERVE_QA_TOKEN", "short")
    with pytest.raises(ConfigError) as caught:
        AuthConfig().tokens()
    assert "BANDIT_SERVE_QA_TOKEN" in str(caught.value)
    assert "short" not in str(caught.value).replace("BANDIT_SERVE", "")
