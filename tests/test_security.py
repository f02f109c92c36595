"""Security defaults: token auth on and no dashboard on the embedded Ray, no unsafe loading
or evaluation anywhere in the code, no storage path that escapes its root."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCES = [p for pkg in ("model", "trainer", "sweeps", "results", "analysis") for p in (ROOT / pkg).rglob("*.py")]


def calls(path: Path):
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Call):
            yield node, ast.unparse(node.func)


def test_the_embedded_ray_keeps_token_auth_and_runs_no_dashboard(local_ray):
    import ray
    from ray._private.authentication.authentication_utils import is_token_auth_enabled

    assert is_token_auth_enabled()
    node = ray._private.worker.global_worker.node
    assert not node.address_info.get("webui_url")


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_eval_exec_pickle_or_unsafe_torch_load(path):
    for node, name in calls(path):
        assert name not in ("eval", "exec", "pickle.load", "pickle.loads", "yaml.load"), \
            f"{path}:{node.lineno}: {name}"
        if name == "torch.load":
            kw = {k.arg: k.value for k in node.keywords}
            assert "weights_only" in kw and ast.literal_eval(kw["weights_only"]) is True, \
                f"{path}:{node.lineno}: torch.load without weights_only=True"


def test_checkpoints_load_with_weights_only(tmp_path):
    import torch

    from ablate.trainer.train import load_checkpoint

    class Payload:
        def __reduce__(self):
            return (print, ("code ran",))

    torch.save({"x": Payload()}, tmp_path / "state.pt")
    with pytest.raises(Exception, match="[Ww]eights only load failed|Unsupported global"):
        load_checkpoint(tmp_path)


@pytest.mark.parametrize("name", ["..", "../up", "/abs", "a/b", "a\\b", ".hidden", "", "x" * 101])
def test_sweep_names_cannot_leave_the_storage_root(name):
    from ablate.sweeps.spec import SpecError, parse_spec

    with pytest.raises(SpecError, match="sweep.name"):
        parse_spec({"sweep": {"name": name}})


def test_nothing_planted_in_a_sweep_folder_runs_on_status_or_resume(tmp_path, local_ray, capsys):
    """A teammate's sweep folder whose Tune files carry pickles that would run code: `status`
    and `resume` read the spec and curves as JSON and Parquet and never unpickle anything."""
    import json
    import pickle

    from ablate.cli import main
    from ablate.results.curves import write_curve
    from ablate.sweeps.spec import parse_spec
    from ablate.sweeps.storage import save_sweep
    from ablate.sweeps.tuner import trial_settings

    marker = tmp_path / "planted-code-ran"

    class Payload:
        def __reduce__(self):
            return (exec, (f"open({str(marker)!r}, 'w').close()",))

    evil = pickle.dumps(Payload())
    spec = parse_spec({"sweep": {"name": "s", "seeds": 2}, "fixed": {"num_iterations": 8}})
    settings = trial_settings(spec, tmp_path, tmp_path / "data") | {"trial_prefix": "abcde"}
    save_sweep(spec, settings)
    folder = tmp_path / "s"
    (folder / "tuner.pkl").write_bytes(evil)
    fallback = {"_type": "CLOUDPICKLE_FALLBACK", "value": evil.hex()}
    trial = json.dumps({"trial_id": "abcde_00000", "status": "TERMINATED", "config": fallback})
    (folder / "experiment_state-2026-01-01_00-00-00.json").write_text(json.dumps(
        {"trial_data": [[trial, json.dumps({"last_result": fallback})]], "runner_data": fallback}))
    for index, seed in enumerate(spec.seeds):  # both trials finished in an earlier session
        params = json.dumps({"seed": seed, "num_iterations": 8})
        write_curve(folder / "curves" / f"abcde_{index:05d}.parquet",
                    [dict(sweep="s", trial_id=f"abcde_{index:05d}", seed=seed, num_iterations=8,
                          step=step, train_time_ms=10.0 * step, val_loss=5.0 - 0.1 * step,
                          status="completed" if step == 8 else "running", params=params)
                     for step in (0, 8)])
    before = {p: p.stat().st_mtime_ns for p in (folder / "curves").iterdir()}

    assert main(["status", str(folder), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)["status"]
    assert {r["trial_id"] for r in rows} == {"abcde_00000", "abcde_00001"}
    assert main(["resume", str(folder), "--json-log"]) == 0
    log = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    ends = [e for e in log if e["event"] == "trial_end"]
    assert sorted(e["trial_id"] for e in ends) == ["abcde_00000", "abcde_00001"]
    assert all(e["state"] == "completed" for e in ends)  # found by id, not trained again
    assert {p: p.stat().st_mtime_ns for p in (folder / "curves").iterdir()} == before
    assert not marker.exists()


def test_resume_refuses_links_out_where_it_writes_and_leaves_tracker_links_be(tmp_path):
    from ablate.sweeps.spec import SpecError
    from ablate.sweeps.storage import check_links_stay_inside

    folder = tmp_path / "s"
    (folder / "checkpoints" / "t_0").mkdir(parents=True)
    (folder / "wandb" / "run" / "logs").mkdir(parents=True)
    (folder / "wandb" / "run" / "logs" / "debug.log").symlink_to(tmp_path / "elsewhere.log")
    (folder / "curves").mkdir()
    (folder / "curves" / "t_1.parquet").symlink_to(folder / "checkpoints")  # inside: fine
    check_links_stay_inside(str(folder))  # W&B's own links in its runs are its business
    (folder / "checkpoints" / "t_0" / "step_000000004").symlink_to(tmp_path)
    with pytest.raises(SpecError, match="step_000000004: a link that leads out"):
        check_links_stay_inside(str(folder))
