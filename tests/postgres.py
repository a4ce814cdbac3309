"""A throwaway PostgreSQL server for tests: ``initdb`` into a temp dir, start, yield a URL, stop.

PostgreSQL refuses to run as root, so as root the server runs as the ``postgres`` user (through
``runuser``); as any other user it runs as that user. It listens on a free port on 127.0.0.1
only, with its Unix socket in the temp dir, trust authentication and ``fsync=off`` (test data
needs no durability). :func:`running_postgres` always stops the server on exit.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import signal
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

__all__ = ["PostgresUnavailable", "find_binaries", "running_postgres"]

DATABASE = "bandit"
SUPERUSER = "postgres"
_SEARCH_DIRS = ("/usr/lib/postgresql/*/bin", "/usr/local/pgsql/bin", "/opt/homebrew/bin")


class PostgresUnavailable(RuntimeError):
    """PostgreSQL cannot be run here (missing binaries, user or ``runuser``)."""


def find_binaries() -> tuple[str, str]:
    """Paths of ``initdb`` and ``pg_ctl``: on PATH, else the newest under a known directory."""
    initdb, pg_ctl = shutil.which("initdb"), shutil.which("pg_ctl")
    if initdb and pg_ctl:
        return initdb, pg_ctl
    candidates: list[str] = []
    for pattern in _SEARCH_DIRS:
        candidates.extend(sorted(glob.glob(pattern), key=_version_key, reverse=True))
    for directory in candidates:
        initdb, pg_ctl = os.path.join(directory, "initdb"), os.path.join(directory, "pg_ctl")
        if os.access(initdb, os.X_OK) and os.access(pg_ctl, os.X_OK):
            return initdb, pg_ctl
    raise PostgresUnavailable(
        "initdb/pg_ctl are neither on PATH nor under " + ", ".join(_SEARCH_DIRS)
    )


def _version_key(path: str) -> tuple[int, ...]:
    parts = Path(path).parent.name.split(".")
    return tuple(int(part) for part in parts if part.isdigit())


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _as_server_user(tmp_dir: Path) -> tuple[list[str], tuple[int, int] | None]:
    """The command prefix that runs a binary as the server's user, and the uid/gid to chown to.

    As root that is ``runuser -u postgres --``; as anyone else, no prefix and no chown.
    """
    if os.geteuid() != 0:
        return [], None
    runuser = shutil.which("runuser")
    if runuser is None:
        raise PostgresUnavailable("running as root, and `runuser` (util-linux) is not on PATH")
    import pwd

    try:
        entry = pwd.getpwnam(SUPERUSER)
    except KeyError:
        raise PostgresUnavailable(
            f"running as root, and there is no {SUPERUSER!r} user to run the server as"
        ) from None
    _grant_traversal(tmp_dir)
    return [runuser, "-u", SUPERUSER, "--"], (entry.pw_uid, entry.pw_gid)


def _grant_traversal(directory: Path) -> None:
    """Let other users pass through (x, not read) every parent, e.g. pytest's 0700 tmp root."""
    for parent in [directory, *directory.parents]:
        if parent == Path("/"):
            break
        mode = parent.stat().st_mode
        if not mode & 0o001:
            parent.chmod(mode | 0o001)


def _run(command: list[str], what: str, log: Path | None = None) -> None:
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    if result.returncode != 0:
        server_log = ""
        if log is not None and log.exists():
            server_log = "\n--- server log ---\n" + log.read_text(errors="replace")[-4000:]
        raise RuntimeError(
            f"{what} failed (exit {result.returncode}): {' '.join(command)}\n"
            f"{result.stdout}{result.stderr}{server_log}"
        )


@contextlib.contextmanager
def running_postgres(tmp_dir: Path | str) -> Iterator[str]:
    """Start a private PostgreSQL under ``tmp_dir``; yield its SQLAlchemy URL; stop it.

    Yields:
        ``postgresql+psycopg://postgres@127.0.0.1:PORT/bandit`` (database already created).

    Raises:
        PostgresUnavailable: binaries, the ``postgres`` user or ``runuser`` are missing.
    """
    import psycopg

    initdb, pg_ctl = find_binaries()
    root = Path(tmp_dir).resolve()
    root.mkdir(parents=True, exist_ok=True)
    prefix, owner = _as_server_user(root)
    data_dir, socket_dir, log = root / "pgdata", root / "pgsock", root / "postgres.log"
    for directory in (data_dir, socket_dir):
        directory.mkdir(mode=0o700, exist_ok=True)
    log.touch()
    if owner is not None:
        for path in (root, data_dir, socket_dir, log):
            os.chown(path, *owner)
    _run(
        [
            *prefix,
            initdb,
            "-D",
            str(data_dir),
            "-A",
            "trust",
            "-U",
            SUPERUSER,
            "-E",
            "UTF8",
            "--no-sync",
        ],
        "initdb",
    )
    port = _free_port()
    options = (
        f"-p {port} -k {socket_dir} -c listen_addresses=127.0.0.1 -c fsync=off"
        " -c synchronous_commit=off -c full_page_writes=off"
    )
    stop = [*prefix, pg_ctl, "-D", str(data_dir), "-m", "fast", "-w", "stop"]
    try:
        _run(
            [*prefix, pg_ctl, "-D", str(data_dir), "-l", str(log), "-w", "-o", options, "start"],
            "pg_ctl start",
            log,
        )
        with psycopg.connect(
            host="127.0.0.1", port=port, user=SUPERUSER, dbname="postgres", autocommit=True
        ) as connection:
            connection.execute(f"CREATE DATABASE {DATABASE}")
        yield f"postgresql+psycopg://{SUPERUSER}@127.0.0.1:{port}/{DATABASE}"
    finally:
        # Always stop, even when start half-failed or a test raised.
        _stop(stop, data_dir / "postmaster.pid", root if owner is not None else None)


def _stop(command: list[str], pid_file: Path, root: Path | None) -> None:
    if not pid_file.exists():
        return
    if root is not None:
        # Another pytest run may have reset its tmp root to 0700 meanwhile.
        _grant_traversal(root)
    try:
        pid = int(pid_file.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        pid = None
    result = subprocess.run(command, capture_output=True, timeout=120, check=False)
    if result.returncode != 0 and pid is not None:
        # pg_ctl could not stop it: end the postmaster we started (fast shutdown = SIGINT).
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGINT)
