"""Where the keys that sign decision ids come from (see :class:`~serve_app.config.AuthConfig`).

In order: ``auth.signing_keys_dir`` (one file per key, the file name is its id; a Kubernetes
Secret mounted as a directory), else the environment variable ``auth.secret_env`` (key id
``env``), else, only with the embedded SQLite store, keys generated into
``<data_dir>/keys`` (``0700``, files ``0600``). A store anyone else may read (PostgreSQL) never
holds a key: such an app without configured keys stops at startup with a message that says
what to set.

The first version kept a generated secret in the store's ``meta`` table. It is loaded as the
verify-only key ``legacy`` (for the ``v1`` ids it signed) and removed from the store once the
longest feedback window since this version first saw it has passed; with generated keys it
moves into the keys directory at once.

Rotation: add a key (a new file, e.g. named by date: the greatest name signs unless
``auth.active_signing_key`` says otherwise), restart; the old key keeps verifying the ids it
signed until they expire, then remove it.
"""

from __future__ import annotations

import logging
import os
import secrets
import time
from pathlib import Path

from serve_app.config import MIN_SECRET_BYTES, AppConfig
from serve_app.errors import ConfigError
from serve_app.files import private_dir, write_private
from serve_app.ingress.tokens import LEGACY_KEY_ID, Keyring
from serve_app.state.store import LEGACY_SECRET_KEY, ExperimentStore, is_sqlite

logger = logging.getLogger("ray.serve")

GENERATED_DIR = "keys"
ENV_KEY_ID = "env"
LEGACY_RETIRE_META = "decision_secret_retire_at"


def _check_length(key: bytes, where: str) -> bytes:
    if len(key) < MIN_SECRET_BYTES:
        raise ConfigError(
            f"the signing key in {where} has {len(key)} bytes; keys need at least "
            f"{MIN_SECRET_BYTES} (e.g. `openssl rand -hex 32`)"
        )
    return key


def read_key_dir(directory: Path) -> dict[str, bytes]:
    """Every key file of a directory by name; names starting with ``.`` are skipped (a
    Kubernetes Secret volume keeps its own ``..data`` entries there)."""
    keys = {}
    for path in sorted(directory.iterdir()):
        if path.name.startswith(".") or not path.is_file():
            continue
        keys[path.name] = _check_length(path.read_bytes().strip(), str(path))
    return keys


def new_key_id() -> str:
    """A key id that sorts after every earlier one: ``kYYYYMMDDhhmmss``."""
    return time.strftime("k%Y%m%d%H%M%S", time.gmtime())


def generate_key(directory: Path) -> str:
    """Write a new random key into ``directory`` (``0600``); returns its id."""
    key_id = new_key_id()
    write_private(private_dir(directory) / key_id, secrets.token_hex(32) + "\n")
    return key_id


def load_keyring(config: AppConfig, store: ExperimentStore) -> Keyring:
    """The keyring for this app, from the first source that has keys (module docstring).

    Raises:
        ConfigError: a key is too short, a configured source is empty or unreadable, the
            active key is missing, or a shared store has no configured keys.
    """
    auth = config.auth
    generated: Path | None = None
    if auth.signing_keys_dir:
        directory = Path(auth.signing_keys_dir)
        try:
            keys = read_key_dir(directory)
        except OSError as error:
            raise ConfigError(f"auth.signing_keys_dir {directory}: {error}") from None
        if not keys:
            raise ConfigError(f"auth.signing_keys_dir {directory} holds no key files")
    elif secret := os.environ.get(auth.secret_env):
        keys = {ENV_KEY_ID: _check_length(secret.encode(), f"${auth.secret_env}")}
    elif is_sqlite(store.url):
        assert config.data_dir is not None, "parse_config resolves data_dir"
        generated = private_dir(Path(config.data_dir) / GENERATED_DIR)
        keys = read_key_dir(generated)
        if not any(key_id != LEGACY_KEY_ID for key_id in keys):
            generate_key(generated)
            keys = read_key_dir(generated)
    else:
        raise ConfigError(
            "this store is shared (not SQLite), so decision ids need signing keys from "
            f"outside it: set auth.signing_keys_dir (a mounted Secret) or ${auth.secret_env}"
        )
    active = auth.active_signing_key or max(k for k in keys if k != LEGACY_KEY_ID)
    if active not in keys:
        raise ConfigError(f"auth.active_signing_key {active!r} is not one of {sorted(keys)}")
    legacy = _legacy_secret(config, store, generated)
    if legacy is not None:
        keys.setdefault(LEGACY_KEY_ID, legacy)
    logger.info("decision ids signed with key %s (verifying %s)", active, sorted(keys))
    return Keyring(keys, active)


def _legacy_secret(
    config: AppConfig, store: ExperimentStore, generated: Path | None
) -> bytes | None:
    """The first version's stored secret, moved out of the store (see module docstring)."""
    stored = store.meta(LEGACY_SECRET_KEY)
    if stored is None:
        return None
    secret = bytes.fromhex(stored)
    if generated is not None:
        write_private(generated / LEGACY_KEY_ID, stored + "\n")
        store.set_meta(LEGACY_SECRET_KEY, None)
        logger.warning("moved the stored decision secret to %s", generated / LEGACY_KEY_ID)
        return secret
    retire_at = store.meta(LEGACY_RETIRE_META)
    if retire_at is None:
        longest = max((e.feedback_window_s for e in config.experiments), default=0.0)
        store.set_meta(LEGACY_RETIRE_META, str(time.time() + longest))
    elif time.time() > float(retire_at):
        store.set_meta(LEGACY_SECRET_KEY, None)
        store.set_meta(LEGACY_RETIRE_META, None)
        logger.warning("removed the first version's decision secret from the store")
        return None
    return secret
