"""bandits/ stays pure: stdlib, numpy and scipy only."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import bandits

FORBIDDEN = {
    "ray", "fastapi", "starlette", "pydantic", "sqlalchemy", "mlflow", "httpx", "requests",
    "serve_app", "uvicorn", "aiohttp", "urllib3", "torch", "sklearn",
}  # fmt: skip
ALLOWED_THIRD_PARTY = {"numpy", "scipy", "bandits"}
PACKAGE_DIR = Path(bandits.__file__).parent


def _imported_roots(path: Path) -> set[str]:
    roots = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
    return roots


def test_source_imports_only_stdlib_numpy_scipy() -> None:
    files = sorted(PACKAGE_DIR.rglob("*.py"))
    assert len(files) >= 10
    for path in files:
        roots = _imported_roots(path)
        bad = roots - ALLOWED_THIRD_PARTY - set(sys.stdlib_module_names) - {"__future__"}
        assert not bad, f"{path.name} imports {sorted(bad)}"


def test_importing_bandits_loads_no_serving_stack() -> None:
    code = (
        "import json, sys, bandits\n"
        "bandits.make_policy('thompson', ['a', 'b'], seed=0).select()\n"
        "print(json.dumps(sorted(sys.modules)))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=PACKAGE_DIR.parent,
    )
    loaded = {name.split(".")[0] for name in json.loads(out.stdout)}
    assert not loaded & FORBIDDEN, sorted(loaded & FORBIDDEN)
