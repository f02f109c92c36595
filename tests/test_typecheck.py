"""`make lint`'s type check: basedpyright, with pyproject.toml's settings, fails on a package
with type errors and passes it without them. The package imports `ablate`, so an error found
in a call of ours also shows that `ablate.*` resolves for the checker (the strict install)."""

import json
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
CHECKER = shutil.which("basedpyright", path=str(Path(sys.executable).parent)) or shutil.which("basedpyright")

pytestmark = pytest.mark.skipif(
    CHECKER is None, reason="basedpyright is not installed (it comes with pip install -e '.[test]')")

GOOD = '''
from ablate.model.config import GPTConfig, param_count


def parameters(cfg: GPTConfig) -> int:
    return param_count(cfg)


class Shape:
    def size(self) -> int:
        return 1


class Square(Shape):
    def size(self) -> int:
        return 4
'''

# Two errors: a wrong return type that only a resolved `ablate` import reveals, and an
# override that "standard" mode refuses (the "basic" mode lets it pass).
BAD = (GOOD.replace("def parameters(cfg: GPTConfig) -> int:", "def parameters(cfg: GPTConfig) -> str:")
       .replace("    def size(self) -> int:\n        return 4", "    def size(self) -> str:\n        return '4'"))


def check(tmp_path: Path, source: str) -> tuple[int, list[dict]]:
    """basedpyright's exit status and diagnostics for a package holding `source`, checked with
    the project's [tool.basedpyright] settings and this interpreter's site-packages."""
    settings = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["basedpyright"]
    config = {k: v for k, v in settings.items() if k not in ("include", "exclude", "venvPath", "venv")}
    config["include"] = ["pkg"]
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "__init__.py").write_text("")
    (tmp_path / "pkg" / "mod.py").write_text(source)
    (tmp_path / "pyrightconfig.json").write_text(json.dumps(config))
    done = subprocess.run([CHECKER, "--outputjson", "--pythonpath", sys.executable,
                           "-p", str(tmp_path / "pyrightconfig.json")],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    return done.returncode, json.loads(done.stdout)["generalDiagnostics"]


def test_a_type_error_fails_the_check(tmp_path):
    status, found = check(tmp_path, BAD)
    assert status == 1
    lines = BAD.splitlines()
    expected = {("reportReturnType", lines.index("    return param_count(cfg)")),
                ("reportIncompatibleMethodOverride", lines.index("    def size(self) -> str:"))}
    errors = {(d["rule"], d["range"]["start"]["line"]) for d in found if d["severity"] == "error"}
    assert errors == expected, found


def test_the_correct_package_passes(tmp_path):
    status, found = check(tmp_path, GOOD)
    assert (status, found) == (0, [])
