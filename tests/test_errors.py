"""One error base for every refusal: each command's bad input, run through the real `ablate`
entry in-process, is one `ablate: ...` line and exit status 2, and the error the command
raised inside is an AblateError; anything else is a bug and keeps its traceback. No Ray:
sweep commands run as dry runs or refuse before it would start."""

import ast
from pathlib import Path

import pytest

from ablate.cli import LAYERS, UsageError, build_parser, main
from ablate.core.errors import AblateError
from ablate.model.config import ConfigError, GPTConfig
from ablate.results.curves import CurveError, write_curve
from ablate.results.errors import InputError
from ablate.results.logparse import LogError, parse_runs
from ablate.sweeps.spec import SpecError
from ablate.trainer.config import TrainConfig, TrainConfigError, model_refusals
from ablate.trainer.data import DataError, find_shards
from ablate.trainer.weights import WeightsError, load_weights

ROOT = Path(__file__).parents[1]
COMMANDS = ["sweep", "resume", "stop", "status", "search-steps", "train", "data", "report", "stats",
            "import-logs", "export-log", "inspect"]


def refused(argv, capsys, error=AblateError):
    """`ablate ARGV` in-process: exit 2 and one line; then the command itself, called
    directly (nothing was written, so it meets the same input): it raises `error`."""
    argv = [str(a) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and err.startswith("ablate: "), err
    args = build_parser().parse_args(argv)
    with pytest.raises(error) as raised:
        args.func(args)
    assert isinstance(raised.value, AblateError)
    return err, raised.value


def spec(tmp_path, body):
    path = tmp_path / "s.toml"
    path.write_text('[sweep]\nname = "x"\n' + body)
    return path


def curve(tmp_path, trial="t0"):
    """A real finished curve of a tiny trial, with the config inspect reads."""
    config = TrainConfig.recipe("tiny").to_flat() | {"trial_id": trial}
    rows = [{"sweep": "s", "trial_id": trial, "seed": 0, "num_iterations": 10, "step": step,
             "train_time_ms": 10.0 * step, "val_loss": 5.0 - step / 10, "params": "{}",
             "status": "completed" if step == 10 else "running"} for step in (0, 10)]
    return write_curve(tmp_path / "s" / "curves" / f"{trial}.parquet", rows, meta={"config": config})


def test_a_bad_spec_is_a_spec_error(tmp_path, capsys):
    err, e = refused(["sweep", spec(tmp_path, "seds = 2\n"), "--dry-run"], capsys, SpecError)
    assert "sweep.seds: unknown key" in err and e.where == str(tmp_path / "s.toml")
    refused(["search-steps", spec(tmp_path, "[search]\nmin_steps = -1\n"), "--dry-run"], capsys,
            SpecError)


def test_a_bad_model_config_value_is_a_train_config_error_and_still_the_models(tmp_path, capsys):
    path = spec(tmp_path, "[fixed]\nwindow_final = -1\n")
    err, _ = refused(["sweep", path, "--dry-run"], capsys, SpecError)
    assert "window_final" in err
    err, e = refused(["train", "--out", tmp_path / "c.parquet", "-s", "window_final=-1"], capsys,
                     TrainConfigError)
    assert isinstance(e, ConfigError) and e.where == "window_final"
    assert not (tmp_path / "c.parquet").exists()


def test_the_model_stays_free_of_ours_and_its_refusal_is_translated_at_the_trainer():
    with pytest.raises(ConfigError) as raw:
        GPTConfig.preset("tiny", n_layer=0)
    assert not isinstance(raw.value, AblateError)  # model/ imports nothing of ours
    with pytest.raises(TrainConfigError, match="^n_layer: ") as translated, model_refusals():
        GPTConfig.preset("tiny", n_layer=0)
    assert translated.value.where == "n_layer"
    with pytest.raises(TrainConfigError) as built:
        TrainConfig.from_flat({"n_layer": 0, "seed": -1})
    assert isinstance(built.value, ConfigError)


def test_a_bad_curve_is_a_curve_error(tmp_path, capsys):
    bad = tmp_path / "c.parquet"
    bad.write_bytes(b"not parquet at all")
    err, e = refused(["export-log", bad], capsys, CurveError)
    assert e.where == str(bad) and "not a readable Parquet file" in err
    refused(["report", bad], capsys, CurveError)
    two = curve(tmp_path, "a").parent / "both.parquet"
    import pyarrow as pa
    import pyarrow.parquet as pq
    table = pq.read_table(curve(tmp_path, "a"))
    pq.write_table(pa.concat_tables([table, table.set_column(1, "trial_id", pa.array(["b"] * 2))]), two)
    err, _ = refused(["export-log", two], capsys, CurveError)
    assert "holds 2 trials" in err


def test_a_bad_log_is_refused_and_its_parser_error_is_an_ablate_error(tmp_path, capsys):
    log = tmp_path / "run.txt"
    log.write_text("no run here\n")
    err, _ = refused(["import-logs", log, "--out", tmp_path / "o", "--strict"], capsys, InputError)
    assert "run.txt: no step lines" in err and not (tmp_path / "o").exists()
    with pytest.raises(LogError) as raised:
        parse_runs(b"step:3/2 val_loss:3.0 train_time:1ms step_avg:1.00ms\n")
    assert isinstance(raised.value, AblateError)


def test_bad_weights_are_a_weights_error(tmp_path, capsys):
    curve_file = curve(tmp_path)
    weights = tmp_path / "s" / "weights" / "t0.safetensors"
    weights.parent.mkdir()
    weights.write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}")
    err, _ = refused(["inspect", curve_file], capsys, InputError)
    assert f"{weights}: " in err and "no trial could be read" in err
    with pytest.raises(WeightsError) as raised:
        load_weights(weights)
    assert isinstance(raised.value, AblateError) and raised.value.where == str(weights)


def test_a_bad_data_folder_is_a_data_error(tmp_path, capsys):
    full = tmp_path / "full"
    full.mkdir()
    (full / "notes.txt").write_text("keep me")
    err, e = refused(["data", "builtin", "--out", full], capsys, DataError)
    assert e.where == str(full) and (full / "notes.txt").read_text() == "keep me"
    empty = tmp_path / "empty"
    empty.mkdir()
    err, _ = refused(["sweep", spec(tmp_path, f'data = "{empty}"\n'), "--dry-run"], capsys, SpecError)
    assert "sweep.data" in err
    with pytest.raises(DataError, match="no train shards"):
        find_shards(empty, "train")


def test_other_commands_refuse_with_their_layers_errors(tmp_path, capsys):
    refused(["stats", "--target", "3", "nan"], capsys, InputError)
    refused(["report", tmp_path / "nowhere"], capsys, InputError)
    refused(["status", tmp_path], capsys, SpecError)
    refused(["stop", tmp_path], capsys, SpecError)
    refused(["inspect", tmp_path], capsys, InputError)  # no curve in it


@pytest.mark.parametrize("argv, said", [
    (["report", "--alpha", "x", "d"], "ablate: report: argument --alpha: invalid float value: 'x'"),
    (["frobnicate"], "invalid choice: 'frobnicate'"),
    ([], "the following arguments are required: command"),
    (["data", "prepare", "--out", "d"], "ablate: data prepare: the following arguments are required"),
])
def test_a_command_line_argparse_cannot_read_is_a_usage_error(argv, said, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and said in err
    with pytest.raises(UsageError):
        build_parser().parse_args(argv)


def test_a_bug_keeps_its_traceback_even_as_a_value_error(monkeypatch, capsys):
    def broken(args):
        raise ValueError("a bug of ours, not bad input")
    monkeypatch.setattr("ablate.results.cli.run_stats", broken)
    with pytest.raises(ValueError, match="a bug of ours"):
        main(["stats", "--target", "3", "2.9"])
    assert capsys.readouterr().err == ""


def test_the_root_lists_every_layers_commands():
    parser = build_parser()
    listed = next(a for a in parser._actions if a.dest == "command").choices
    assert list(listed) == COMMANDS


def test_no_layer_reaches_the_root_or_another_layers_cli():
    """Each layer's cli module gives its commands to the root (ablate.cli); no module of a
    layer imports the root or another layer's cli (the `python -m` entry points excepted)."""
    for layer in LAYERS:
        others = {f"ablate.{other}.cli" for other in LAYERS if other != layer} | {"ablate.cli"}
        for path in (ROOT / layer).rglob("*.py"):
            if path.name == "__main__.py":
                continue
            tree = ast.parse(path.read_text())
            imported = {node.module for node in ast.walk(tree)
                        if isinstance(node, ast.ImportFrom) and node.module}
            imported |= {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import)
                         for alias in node.names}
            assert not imported & others, (path, imported & others)
