"""Files that hold what others must not read: the data directory, SQLite stores, keys.

The data directory is created ``0700`` and every file in it ``0600``, so on a shared machine
no other user can read the experiment store (rewards, assignments) or the signing keys
(anyone holding a key mints decision ids for any arm). Files written by an older version
with looser modes are tightened when the app starts.

SQLite creates its ``-wal`` and ``-shm`` files with the database file's own permissions,
so creating the database ``0600`` before the first connection covers them too.

Example:
    >>> import tempfile, pathlib
    >>> root = pathlib.Path(tempfile.mkdtemp())
    >>> path = private_file(root / "data" / "x.db")
    >>> oct(path.parent.stat().st_mode & 0o777), oct(path.stat().st_mode & 0o777)
    ('0o700', '0o600')
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

DIR_MODE = 0o700
FILE_MODE = 0o600


def private_dir(path: str | Path) -> Path:
    """Create ``path`` (and missing parents) ``0700``; tighten it if it exists."""
    directory = Path(path)
    directory.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    with contextlib.suppress(PermissionError):  # not ours (e.g. a mounted volume): leave it
        if directory.stat().st_mode & 0o777 != DIR_MODE:
            directory.chmod(DIR_MODE)
    return directory


def private_file(path: str | Path) -> Path:
    """Create ``path`` empty ``0600`` if missing (its directory ``0700``); tighten it and its
    SQLite companions (``-wal``, ``-shm``, ``-journal``) if they exist."""
    file = Path(path)
    private_dir(file.parent)
    with contextlib.suppress(FileExistsError):
        os.close(os.open(file, os.O_CREAT | os.O_EXCL | os.O_WRONLY, FILE_MODE))
    for candidate in (file, *(file.with_name(file.name + s) for s in ("-wal", "-shm", "-journal"))):
        with contextlib.suppress(FileNotFoundError, PermissionError):
            if candidate.stat().st_mode & 0o777 != FILE_MODE:
                candidate.chmod(FILE_MODE)
    return file


def write_private(path: str | Path, text: str) -> Path:
    """Write ``text`` to a new ``0600`` file atomically (write a temp file, then rename)."""
    file = Path(path)
    private_dir(file.parent)
    temporary = file.with_name(f".{file.name}.tmp{os.getpid()}")
    descriptor = os.open(temporary, os.O_CREAT | os.O_TRUNC | os.O_WRONLY, FILE_MODE)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, file)
    return file
