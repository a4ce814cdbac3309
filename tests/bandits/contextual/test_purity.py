"""bandits.contextual and bandits.ope stay pure: stdlib, numpy and scipy only."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import bandits

ALLOWED = {"numpy", "scipy", "bandits", "__future__"} | set(sys.stdlib_module_names)
FORBIDDEN = {"ray", "fastapi", "pydantic", "sqlalchemy", "sklearn", "httpx", "requests", "torch"}
ROOT = Path(bandits.__file__).parent


def test_sources_import_only_stdlib_numpy_scipy() -> None:
    files = sorted([*(ROOT / "contextual").glob("*.py"), *(ROOT / "ope").glob("*.py")])
    assert len(files) >= 12
    for path in files:
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            bad = {name.split(".")[0] for name in names} - ALLOWED
            assert not bad, f"{path.name} imports {sorted(bad)}"


def test_importing_loads_no_serving_stack() -> None:
    code = (
        "import json, sys, numpy as np\n"
        "import bandits.contextual as c, bandits.ope as o\n"
        "p = c.make_contextual_policy('lin_thompson', ['a', 'b'], 2, seed=0)\n"
        "p.select(np.ones(2))\n"
        "print(json.dumps(sorted(sys.modules)))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT.parent
    )
    loaded = {name.split(".")[0] for name in json.loads(out.stdout)}
    assert not loaded & FORBIDDEN, sorted(loaded & FORBIDDEN)
