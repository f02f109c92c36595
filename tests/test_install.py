"""The built wheel installs one import root, `ablate`, and nothing that shadows or is shadowed
by a user's own `model`, `trainer` or `results`."""

import os
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

ROOT = Path(__file__).parents[1]


def run(*args, cwd=None, check=True):
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # only what is installed
    done = subprocess.run([str(a) for a in args], capture_output=True, text=True, cwd=cwd,
                          env=env, timeout=300)
    assert not check or done.returncode == 0, done.stdout + done.stderr
    return done


def site_packages(env: Path) -> Path:
    return next(env.glob("lib/python*/site-packages"))


def test_wheel_installs_only_ablate_and_runs_beside_lookalike_packages(tmp_path):
    # The wheel, built from this checkout with the build backend already installed here.
    run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--quiet",
        "-w", tmp_path / "dist", ROOT)
    wheel = next((tmp_path / "dist").glob("ablate_sweeps-*.whl"))

    # A fresh venv; the dependencies come from this environment's site-packages (a path
    # entry: its .pth files, among them the editable install of this checkout, stay unread).
    env = tmp_path / "env"
    venv.EnvBuilder(with_pip=False).create(env)
    before = set(p.name for p in site_packages(env).iterdir())
    run(sys.executable, "-m", "pip", "--python", env / "bin" / "python", "install", "--no-deps",
        "--no-index", "--quiet", wheel)
    added = set(p.name for p in site_packages(env).iterdir()) - before
    assert {name for name in added if not name.endswith(".dist-info")} == {"ablate"}
    assert [name for name in added if name.endswith(".dist-info")] == [
        wheel.name.split("-py3")[0] + ".dist-info"]
    (site_packages(env) / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")

    # A research folder with its own model.py, trainer/ and results/.
    work = tmp_path / "work"
    (work / "trainer").mkdir(parents=True)
    (work / "results").mkdir()
    (work / "model.py").write_text("raise ImportError('the user model.py was imported')\n")
    (work / "trainer" / "__init__.py").write_text("raise ImportError('user trainer/ was imported')\n")
    (work / "results" / "__init__.py").write_text("raise ImportError('user results/ was imported')\n")

    version = run(env / "bin" / "ablate", "--version", cwd=work)
    assert version.stdout.startswith("ablate 0.")
    stats = run(env / "bin" / "ablate", "stats", "--target", "3", "2.9", "2.95", cwd=work)
    assert "2.9" in stats.stdout
    located = run(env / "bin" / "python", "-c", "import ablate.cli as c; print(c.__file__)",
                  cwd=work)
    assert located.stdout.startswith(str(site_packages(env)))
    trainer_help = run(env / "bin" / "python", "-m", "ablate.trainer", "--help", cwd=work)
    assert "train" in trainer_help.stdout


def test_no_top_level_model_package_in_the_project_environment(tmp_path):
    done = run(sys.executable, "-c", "import model", cwd=tmp_path, check=False)
    assert done.returncode != 0 and "No module named 'model'" in done.stderr
