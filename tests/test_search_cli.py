"""`ablate search-steps` options that need no Ray: -s overrides, --dry-run, --mlflow/--wandb,
argument errors, and the plain timestamped log lines; then one `--json-log` run end to end."""

from __future__ import annotations

import json
import re

import pytest
from rich.markup import escape
from test_interrupt import ablate  # the CLI as a subprocess, output piped

from ablate.cli import main
from ablate.sweeps.search.cli import Log
from ablate.sweeps.search.spec import load_search_spec
from ablate.sweeps.spec import SpecError

SPEC = """
[sweep]
name = "tiny-steps"
data = "{data}"
[resources]
workers = 1
[fixed]
val_every = 4
batch_size = 2
val_tokens = 1024
[search]
min_steps = 8
max_steps = 16
granularity = 4
target = 3.9
seeds_per_probe = 2
max_seeds = 3
max_trials = 8
"""
STAMP = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d ")


@pytest.fixture
def spec_file(tmp_path, data_dir):
    path = tmp_path / "search.toml"
    path.write_text(SPEC.format(data=data_dir))
    return path


def test_dry_run_shows_the_plan_with_overrides_and_writes_nothing(spec_file, tmp_path, capsys,
                                                                  monkeypatch):
    monkeypatch.setenv("COLUMNS", "500")  # long temp paths on one line
    root = tmp_path / "runs"
    assert main(["search-steps", str(spec_file), "--storage", str(root), "--dry-run",
                 "-s", "search.max_trials=5", "-s", "search.target=3.5", "-s", "fixed.lr_muon=0.04",
                 "--mlflow", "--wandb", "offline", "--wandb-project", "steps"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "mean final val loss < 3.5" in out
    assert "fixed: val_every=4, batch_size=2, val_tokens=1024, lr_muon=0.04" in out
    assert "8..16 by 4: 3 step counts" in out
    assert "2 per new step count, then one at a time up to 3" in out
    assert "5 trials over every resume (at most 80 steps)" in out
    assert "1 workers x (1 CPU)" in out
    assert "mlflow=local, wandb=offline, wandb_project=steps" in out
    assert "'search-steps:tiny-steps' (probes)" in out
    assert f"sqlite:///{(root / 'tiny-steps' / 'optuna.db').resolve()}" in out
    assert f"curves {root / 'tiny-steps' / 'curves'}" in out
    assert "Trial shapes" in out
    assert not root.exists()


def test_overrides_are_validated_as_the_file_is(spec_file):
    spec = load_search_spec(spec_file, {"search.max_trials": 12, "tracking.mlflow": "local"})
    assert spec.search.max_trials == 12 and spec.sweep.tracking.mlflow == "local"
    cases = [({"axes.lr_muon": [1, 2]}, r"^-s axes\.lr_muon: expected section\.key=value with a "
                                        r"section among sweep, resources, fixed, tracking, search"),
             ({"search": 1}, r"^-s search: expected section\.key=value"),
             ({"search.granularity": 3}, r"search\.granularity: 3 does not divide"),
             ({"search.max_trial": 3}, r"search\.max_trial: unknown key"),
             ({"fixed.num_iterations": 3}, r"fixed\.num_iterations: is chosen by the search"),
             ({"search.target": "low"}, r"search\.target: must be int or float, got str 'low'"),
             ({"fixed.lr_muon": -1.0}, r"fixed\.lr_muon: ")]
    for settings, said in cases:
        with pytest.raises(SpecError, match=said):
            load_search_spec(spec_file, settings)


@pytest.mark.parametrize("argv, said", [
    (["-s", "search.max_trials"], "-s 'search.max_trials': expected key=value"),
    (["--mlflow", "no scheme"], "tracking.mlflow: must be 'local'"),
    (["-s", "search.alpha=0.9"], "search.alpha: must be in (0, 0.5], got 0.9"),
])
def test_bad_arguments_are_one_line_exit_2_and_write_nothing(spec_file, tmp_path, capsys, argv, said):
    root = tmp_path / "runs"
    assert main(["search-steps", str(spec_file), "--storage", str(root), *argv]) == 2
    err = capsys.readouterr().err
    assert said in err and len(err.strip().splitlines()) == 1
    assert not root.exists()


def test_wandb_takes_only_its_modes(spec_file, capsys):
    assert main(["search-steps", str(spec_file), "--wandb", "sometimes", "--dry-run"]) == 2
    assert "invalid choice: 'sometimes'" in capsys.readouterr().err


def test_a_log_that_is_no_terminal_gets_plain_timestamped_unwrapped_lines(capsys):
    long = "x" * 300
    log = Log()  # pytest's stderr is not a terminal
    log.say(f"[bold]demo[/]: {long} in [red]{escape('/runs/[a]')}[/]")  # data is escaped
    log.say("a path that is not markup: /runs/[/]x")
    log.on_result("abc_00001", {"step": 8, "num_iterations": 12, "val_loss": 4.01234, "train_loss": None})
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 3 and all(STAMP.match(line) for line in lines)
    assert lines[2][20:] == "  abc_00001 step 8/12  val 4.0123  train -"
    assert lines[0][20:] == f"demo: {long} in /runs/[a]"
    assert lines[1].endswith("/runs/[/]x")


def test_search_with_a_json_log_puts_only_events_on_stdout(spec_file, tmp_path, local_ray):
    root = tmp_path / "runs"
    run = ablate("search-steps", str(spec_file), "--storage", str(root), "--json-log",
                 "-s", "search.max_trials=2", "--address", local_ray)
    out, err = run.communicate(timeout=600)
    assert run.returncode == 0, err[-2000:]
    events = [json.loads(line) for line in out.splitlines()]  # nothing else on stdout
    kinds = [e["event"] for e in events]
    assert kinds[0] == "search_start" and kinds[-1] == "report"
    assert events[0]["steps"] == [8, 12, 16] and events[0]["trials_done"] == 0
    starts = {(e["steps"], e["seed"]) for e in events if e["event"] == "probe_start"}
    ends = [e for e in events if e["event"] == "probe_end"]
    assert starts == {(12, 0), (12, 1)} == {(e["steps"], e["seed"]) for e in ends}
    assert all(e["val_loss"] > 0 and e["verdict"]["steps"] == 12 for e in ends)
    results = [e for e in events if e["event"] == "result"]  # progress within each probe
    assert {e["trial_id"] for e in results} == {e["trial_id"] for e in ends}
    assert {(e["step"], e["num_iterations"]) for e in results} >= {(4, 12), (8, 12)}
    report = events[-1]
    assert report["trials"] == 2 and report["answer"] is None
    assert report["summary"].startswith("undecided after 2 trials")
    assert [v["steps"] for v in report["verdicts"]] == [12]
    assert len(list((root / "tiny-steps" / "curves").glob("*.parquet"))) == 2
