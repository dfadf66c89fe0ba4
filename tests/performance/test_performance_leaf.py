"""The performance package is a leaf: the product and the simulator both import it, so it
imports neither of them, nor Django."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import performance

PACKAGE = Path(performance.__file__).parent
ROOT = PACKAGE.parent
# Every first-party top-level package but the catalogue itself, and Django.
FORBIDDEN = {
    p.name for p in ROOT.iterdir() if (p / "__init__.py").exists() and p.name != "performance"
} | {"django", "rest_framework", "channels", "celery"}


def test_importing_the_catalogue_loads_no_product_simulator_or_django_module() -> None:
    code = "import json, sys, performance; print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    loaded = {name.split(".")[0] for name in json.loads(out.stdout)}
    assert {"simulator", "scaling", "quotas"} <= FORBIDDEN
    assert loaded & FORBIDDEN == set()


def test_its_modules_import_only_the_standard_library_and_each_other() -> None:
    for path in PACKAGE.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                assert top == "__future__" or top in sys.stdlib_module_names, (path.name, name)
