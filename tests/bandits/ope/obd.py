"""The Open Bandit Dataset small sample, fetched once from the ``obp`` sdist and cached.

Saito et al. (2021), "Open Bandit Dataset and Pipeline": ZOZOTOWN fashion recommendations,
80 items, 3 positions, logged under a uniform random policy and under Bernoulli Thompson
sampling (BTS) on the same campaign. The ``obp`` source distribution on PyPI ships a 10,000
record sample of each (``obp/dataset/obd/{random,bts}/all/all.csv``); we download only that
sdist (never install ``obp``, which pins old dependencies), extract the two CSV files and
check their SHA-256.

The cache lives in ``$BANDIT_SERVE_OBD_DIR`` or else ``<sys.prefix>/share/obd`` (``.venv/share/obd``
in the project's virtualenv, removed with it by ``make clean``). Prefetch with::

    .venv/bin/python tests/bandits/ope/obd.py

Columns used: ``item_id`` (action), ``position`` (1..3), ``click`` (reward),
``propensity_score`` (the logging policy's probability of that item at that position) and
``user_feature_0..3`` (hashed categorical user features).
"""

from __future__ import annotations

import csv
import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import numpy as np

OBP_VERSION = "0.5.7"
SDIST = f"obp-{OBP_VERSION}.tar.gz"
SDIST_SHA256 = "3060d67fedfcfadf1e7a6f2608987f74412b5eb74d2c567edeb147595c68f2a0"
MEMBERS = {
    "random": (
        f"obp-{OBP_VERSION}/obp/dataset/obd/random/all/all.csv",
        "7168295b6e0a9eabcf3392320a5dd434e542b68e705d5cd9491499af589812f1",
    ),
    "bts": (
        f"obp-{OBP_VERSION}/obp/dataset/obd/bts/all/all.csv",
        "0ad874e4dbf6902f0845dd478ad8dde5ef6903583d3ffaace78411bdad064106",
    ),
}
N_ITEMS = 80
USER_FEATURES = tuple(f"user_feature_{i}" for i in range(4))


class OBDUnavailable(RuntimeError):
    """The dataset could not be downloaded or failed verification."""


def cache_dir() -> Path:
    """Where the two CSV files are cached."""
    configured = os.environ.get("BANDIT_SERVE_OBD_DIR")
    return Path(configured) if configured else Path(sys.prefix) / "share" / "obd"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _cached(root: Path) -> dict[str, Path] | None:
    paths = {policy: root / f"{policy}.csv" for policy in MEMBERS}
    if all(p.is_file() and _sha256(p) == MEMBERS[k][1] for k, p in paths.items()):
        return paths
    return None


def fetch(root: Path | None = None, timeout: float = 600.0) -> dict[str, Path]:
    """Paths of ``random.csv`` and ``bts.csv``, downloading and extracting them if needed.

    Raises:
        OBDUnavailable: pip could not download the sdist, or a checksum does not match.
    """
    root = cache_dir() if root is None else root
    cached = _cached(root)
    if cached is not None:
        return cached
    with tempfile.TemporaryDirectory(prefix="obd-") as tmp:
        command = [
            sys.executable, "-m", "pip", "download", f"obp=={OBP_VERSION}", "--no-deps",
            "--no-binary", ":all:", "--ignore-requires-python", "--disable-pip-version-check",
            "--quiet", "-d", tmp,
        ]  # fmt: skip
        try:
            subprocess.run(command, check=True, capture_output=True, text=True, timeout=timeout)
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as err:
            detail = getattr(err, "stderr", "") or str(err)
            raise OBDUnavailable(f"pip download obp=={OBP_VERSION} failed: {detail}") from err
        sdist = Path(tmp) / SDIST
        if not sdist.is_file() or _sha256(sdist) != SDIST_SHA256:
            raise OBDUnavailable(f"{SDIST} is missing or its SHA-256 does not match")
        root.mkdir(parents=True, exist_ok=True)
        with tarfile.open(sdist, "r:gz") as archive:
            for policy, (member, sha) in MEMBERS.items():
                source = archive.extractfile(member)
                if source is None:
                    raise OBDUnavailable(f"{member} is not in {SDIST}")
                partial = root / f".{policy}.csv.partial"
                with partial.open("wb") as out:
                    shutil.copyfileobj(source, out)
                if _sha256(partial) != sha:
                    partial.unlink()
                    raise OBDUnavailable(f"{member} from {SDIST} has an unexpected SHA-256")
                partial.replace(root / f"{policy}.csv")  # atomic: readers never see half a file
    cached = _cached(root)
    if cached is None:  # pragma: no cover - only if the files vanish under us
        raise OBDUnavailable(f"the OBD files in {root} did not verify after extraction")
    return cached


def load(path: Path) -> dict[str, np.ndarray]:
    """The columns of one CSV: ``item_id``, ``position``, ``click``, ``propensity_score`` and
    the user features (as strings)."""
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    out: dict[str, np.ndarray] = {
        "item_id": np.array([int(r["item_id"]) for r in rows]),
        "position": np.array([int(r["position"]) for r in rows]),
        "click": np.array([float(r["click"]) for r in rows]),
        "propensity_score": np.array([float(r["propensity_score"]) for r in rows]),
    }
    for name in USER_FEATURES:
        out[name] = np.array([r[name] for r in rows])
    return out


if __name__ == "__main__":
    for policy, path in fetch().items():
        print(f"{policy}: {path}")
