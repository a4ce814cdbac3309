"""Where signing keys come from: a mounted directory, the environment, or generated into the
private data directory; never a shared store; the first version's stored secret retired."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from serve_app.config import parse_config
from serve_app.errors import ConfigError
from serve_app.ingress.tokens import LEGACY_KEY_ID, DecisionToken
from serve_app.state.keys import GENERATED_DIR, LEGACY_RETIRE_META, load_keyring
from serve_app.state.store import LEGACY_SECRET_KEY, ExperimentStore

ARMS = [{"name": "a", "model_uri": "/m/a"}, {"name": "b", "model_uri": "/m/b"}]


def app_config(tmp_path: Path, **auth) -> object:
    return parse_config(
        {
            "data_dir": str(tmp_path / "data"),
            "auth": auth,
            "experiments": [{"name": "e", "arms": ARMS}],
        }
    )


@pytest.fixture(autouse=True)
def no_secret_env(monkeypatch):
    monkeypatch.delenv("BANDIT_SERVE_SECRET", raising=False)


def test_the_embedded_default_generates_a_private_key_once(tmp_path):
    config = app_config(tmp_path)
    store = ExperimentStore(config.store_url)
    keys = load_keyring(config, store)
    directory = Path(config.data_dir) / GENERATED_DIR
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    files = list(directory.iterdir())
    assert [f.name for f in files] == [keys.active]
    assert stat.S_IMODE(files[0].stat().st_mode) == 0o600
    again = load_keyring(config, store)
    assert again.active == keys.active
    decision_id = keys.sign(DecisionToken.issue("e", 1, "a", 0.5))
    assert again.verify(decision_id).arm == "a"  # the key outlives a restart
    assert store.meta(LEGACY_SECRET_KEY) is None  # and is not in the store
    store.close()


def test_a_mounted_directory_rotates_by_adding_a_file(tmp_path):
    mounted = tmp_path / "secret"
    (mounted / "..data").mkdir(parents=True)  # what a Kubernetes Secret volume holds
    (mounted / "2026-11").write_text("o" * 40 + "\n")
    config = app_config(tmp_path, signing_keys_dir=str(mounted))
    store = ExperimentStore(config.store_url)
    old = load_keyring(config, store)
    assert old.key_ids == ["2026-11"]
    issued = old.sign(DecisionToken.issue("e", 1, "a", 0.5))
    (mounted / "2026-12").write_text("n" * 40)
    rotated = load_keyring(config, store)
    assert rotated.active == "2026-12"
    assert rotated.verify(issued).arm == "a"
    pinned = load_keyring(
        app_config(tmp_path, signing_keys_dir=str(mounted), active_signing_key="2026-11"), store
    )
    assert pinned.active == "2026-11"
    store.close()


def test_short_or_missing_keys_stop_the_app_with_a_clear_message(tmp_path, monkeypatch):
    mounted = tmp_path / "secret"
    mounted.mkdir()
    config = app_config(tmp_path, signing_keys_dir=str(mounted))
    store = ExperimentStore(config.store_url)
    with pytest.raises(ConfigError, match="holds no key files"):
        load_keyring(config, store)
    (mounted / "k1").write_text("too-short")
    with pytest.raises(ConfigError, match="has 9 bytes; keys need at least 32"):
        load_keyring(config, store)
    monkeypatch.setenv("BANDIT_SERVE_SECRET", "x" * 10)
    with pytest.raises(ConfigError, match=r"\$BANDIT_SERVE_SECRET has 10 bytes"):
        load_keyring(app_config(tmp_path), store)
    monkeypatch.setenv("BANDIT_SERVE_SECRET", "x" * 32)
    assert load_keyring(app_config(tmp_path), store).key_ids == ["env"]
    store.close()


def test_a_shared_store_needs_configured_keys(postgres_url, tmp_path):
    config = parse_config(
        {
            "store_url": postgres_url,
            "data_dir": str(tmp_path),
            "experiments": [{"name": "e", "arms": ARMS}],
        }
    )
    store = ExperimentStore(postgres_url)
    with pytest.raises(ConfigError, match="signing_keys_dir"):
        load_keyring(config, store)
    store.close()


def test_the_first_versions_stored_secret_moves_out_of_the_store(tmp_path):
    config = app_config(tmp_path)
    store = ExperimentStore(config.store_url)
    store.set_meta(LEGACY_SECRET_KEY, ("ab" * 32))
    keys = load_keyring(config, store)
    assert LEGACY_KEY_ID in keys.key_ids
    assert keys.active != LEGACY_KEY_ID
    assert store.meta(LEGACY_SECRET_KEY) is None
    assert (Path(config.data_dir) / GENERATED_DIR / LEGACY_KEY_ID).read_text().strip() == "ab" * 32
    assert LEGACY_KEY_ID in load_keyring(config, store).key_ids  # kept in the private dir
    store.close()


def test_with_configured_keys_the_stored_secret_verifies_until_it_expires(tmp_path, monkeypatch):
    monkeypatch.setenv("BANDIT_SERVE_SECRET", "x" * 32)
    config = app_config(tmp_path)
    store = ExperimentStore(config.store_url)
    store.set_meta(LEGACY_SECRET_KEY, "cd" * 32)
    assert LEGACY_KEY_ID in load_keyring(config, store).key_ids
    assert float(store.meta(LEGACY_RETIRE_META)) > 0
    store.set_meta(LEGACY_RETIRE_META, "0")  # the longest feedback window has passed
    assert LEGACY_KEY_ID not in load_keyring(config, store).key_ids
    assert store.meta(LEGACY_SECRET_KEY) is None
    store.close()
