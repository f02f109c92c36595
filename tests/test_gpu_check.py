"""bench/gpu_check.sh runs from a bare copy of the checkout with a Python that has torch and
numpy and nothing else: no project install, no pyarrow, no pytest (as a GPU machine may be)."""

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from importlib import metadata
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def requirements(name: str, seen: set[str]) -> set[str]:
    """`name` and every distribution it needs (extras left out), by normalised name."""
    key = name.lower().replace("_", "-")
    if key in seen:
        return seen
    seen.add(key)
    for req in metadata.requires(name) or ():
        if "extra ==" in req:
            continue
        marker = req.split(";")[1] if ";" in req else None
        if marker and not _marker_holds(marker):
            continue
        dep = req.split(";")[0].strip()
        for stop in "<>=!~[ (":
            dep = dep.split(stop)[0]
        requirements(dep, seen)
    return seen


def _marker_holds(marker: str) -> bool:
    from packaging.markers import Marker
    return Marker(marker).evaluate()


def only_torch_and_numpy(folder: Path) -> Path:
    """A virtual environment whose site-packages holds links to torch, numpy and what torch
    needs to import, and nothing else: returns its python."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(folder)], check=True)
    purelib = Path(sysconfig.get_path("purelib", vars={"base": str(folder), "platbase": str(folder)}))
    for dist in requirements("torch", set()) | {"numpy"}:
        d = metadata.distribution(dist)
        tops = {Path(str(f)).parts[0] for f in d.files or () if not str(f).startswith("..")}
        for top in tops:
            source = Path(d.locate_file(top))
            if source.exists() and not (purelib / top).exists() and top != "__pycache__":
                (purelib / top).symlink_to(source)
    return folder / "bin" / "python"


@pytest.fixture(scope="module")
def bare(tmp_path_factory):
    """A copy of the checkout's files (no .venv, nothing built) and the bare python."""
    base = tmp_path_factory.mktemp("bare")
    files = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
                           cwd=ROOT, check=True, capture_output=True, text=True).stdout.split("\0")
    checkout = base / "checkout"
    for name in filter(None, files):
        if (ROOT / name).is_file():
            (checkout / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, checkout / name)
    return checkout, only_torch_and_numpy(base / "venv")


def test_the_bare_python_has_torch_and_numpy_and_nothing_of_ours(bare):
    _, python = bare
    probe = ("import importlib.util as u, torch, numpy; "
             "print([m for m in ('ablate', 'pyarrow', 'pytest', 'ray', 'optuna', 'rich') if u.find_spec(m)])")
    out = subprocess.run([str(python), "-c", probe], check=True, capture_output=True, text=True, cwd="/")
    assert out.stdout.strip() == "[]"


def test_gpu_check_cpu_smoke_runs_from_a_bare_checkout(bare):
    checkout, python = bare
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env |= {"PYTHON": str(python), "OMP_NUM_THREADS": "1"}
    done = subprocess.run(["bash", "bench/gpu_check.sh", "--cpu-smoke"], cwd=checkout, env=env,
                          capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout + done.stderr
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    assert figures["mode"] == "cpu-smoke" and figures["installed"] is False and figures["ok"] is True
    assert figures["tests"] == {"skipped_because": "no pytest"}
    assert "gpu tests: skipped (pytest is not installed)" in done.stdout
    assert [s["k"] for s in figures["speed"]] == [1, 0]
    for s in figures["speed"]:
        assert set(s["phases"]) == {"early", "middle", "late"}
        assert all(p["ms"] > 0 for p in s["phases"].values())


def test_gpu_check_without_cuda_and_without_cpu_smoke_says_so(bare):
    checkout, python = bare
    done = subprocess.run(["bash", "bench/gpu_check.sh"], cwd=checkout, capture_output=True, text=True,
                          env=dict(os.environ, PYTHON=str(python)), timeout=120)
    assert done.returncode == 2
    assert "no CUDA device visible (--cpu-smoke runs the CPU part)" in done.stderr
