"""Bearer-token checks: 401 without a token, 403 with a wrong one or none configured."""

from __future__ import annotations

import pytest

from serve_app.auth import check_bearer, fingerprint
from serve_app.errors import Forbidden, Unauthorized

TOKEN = "a-long-enough-control-token"


def test_valid_token_returns_its_fingerprint():
    assert check_bearer(f"Bearer {TOKEN}", TOKEN, what="control", env="X") == fingerprint(TOKEN)
    assert check_bearer(f"bearer  {TOKEN} ", TOKEN, what="control", env="X").startswith("token:")


@pytest.mark.parametrize("header", [None, "", "Bearer", "Bearer ", f"Basic {TOKEN}", TOKEN])
def test_missing_token_is_401(header):
    with pytest.raises(Unauthorized) as caught:
        check_bearer(header, TOKEN, what="control", env="X")
    assert caught.value.status == 401


def test_wrong_token_is_403_and_not_echoed():
    with pytest.raises(Forbidden) as caught:
        check_bearer("Bearer guess", TOKEN, what="control", env="X")
    assert caught.value.status == 403
    assert "guess" not in caught.value.message
    assert TOKEN not in caught.value.message


def test_unconfigured_token_disables_the_endpoints():
    with pytest.raises(Forbidden, match="set BANDIT_SERVE_CONTROL_TOKEN"):
        check_bearer(f"Bearer {TOKEN}", None, what="control", env="BANDIT_SERVE_CONTROL_TOKEN")


def test_fingerprint_hides_the_token():
    assert TOKEN not in fingerprint(TOKEN)
    assert fingerprint(TOKEN) != fingerprint(TOKEN + "x")
