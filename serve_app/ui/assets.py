"""The live page's static files (``serve_app/ui/static/``): read once, served from memory.

Only files that were in the folder when the router started, with a suffix of
:data:`MEDIA_TYPES`, can be served: a request names an asset by its relative POSIX path and
anything else (``..``, an absolute path, a backslash, a dot file, an unknown suffix) is not
found. No request path ever reaches the file system.

Every page links its assets with a content hash (``app.js?v=<hash>``), so a response to a
request carrying the current hash is cacheable for a year (``immutable``); any other request
is answered with ``no-cache`` and an ``ETag`` to revalidate.

Example:
    >>> assets = Assets.load()
    >>> assets.get("common.js").media_type
    'text/javascript; charset=utf-8'
    >>> assets.get("../endpoints.py") is None, assets.get("/etc/passwd") is None
    (True, True)
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

STATIC_DIR = Path(__file__).with_name("static")
MEDIA_TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
}
IMMUTABLE = "public, max-age=31536000, immutable"
REVALIDATE = "no-cache"


@dataclass(frozen=True)
class Asset:
    """One static file: its bytes, media type and content hash (the ETag and ``v``)."""

    name: str
    body: bytes
    media_type: str
    digest: str

    @property
    def etag(self) -> str:
        return f'"{self.digest}"'

    def cache_control(self, version: str | None) -> str:
        """Cache for a year when the request names this content's hash, else revalidate."""
        return IMMUTABLE if version == self.digest else REVALIDATE


def safe_name(path: str) -> str | None:
    """``path`` as a relative POSIX name inside the static folder, else None.

    Example:
        >>> safe_name("vendor/uplot/uPlot.min.css")
        'vendor/uplot/uPlot.min.css'
        >>> [safe_name(p) for p in ("../x.js", "/etc/passwd", "a\\\\b.js", ".env", "a//b.js")]
        [None, None, None, None, None]
    """
    if not path or "\\" in path or "\x00" in path or path.startswith("/"):
        return None
    parts = path.split("/")
    if any(part in ("", ".", "..") or part.startswith(".") for part in parts):
        return None
    return str(PurePosixPath(*parts))


class Assets:
    """The served files by name (see the module docstring)."""

    def __init__(self, files: dict[str, Asset]) -> None:
        self.files = files

    @classmethod
    def load(cls, root: Path = STATIC_DIR) -> Assets:
        """Read every servable file under ``root`` (symbolic links and dot files left out)."""
        files = {}
        root = root.resolve()
        for path in sorted(root.rglob("*")):
            media_type = MEDIA_TYPES.get(path.suffix)
            if media_type is None or path.is_symlink() or not path.is_file():
                continue
            name = safe_name(path.relative_to(root).as_posix())
            if name is None or not path.resolve().is_relative_to(root):
                continue
            body = path.read_bytes()
            digest = hashlib.sha256(body).hexdigest()[:16]
            files[name] = Asset(name, body, media_type, digest)
        return cls(files)

    def get(self, path: str) -> Asset | None:
        name = safe_name(path)
        return None if name is None else self.files.get(name)

    def url(self, base: str, name: str) -> str:
        """The versioned URL of asset ``name`` under the app's base path.

        Raises:
            KeyError: no such asset (a page names only files that ship with it).
        """
        return f"{base}/ui/static/{name}?v={self.files[name].digest}"
