"""Items 14, 15 and 16 of the reliability table: inputs that used to pass, hang or end in a
traceback, each now one line naming the field (exit 2), before anything is written."""

import pytest

from ablate.cli import main
from ablate.trainer.data import DataError, find_shards, write_shard

BIG = "1" + "0" * 400


@pytest.mark.parametrize("body, said", [
    # item 14: numbers too large for a float, a range too wide for one, a vocabulary too large
    (f"[sweep]\nname = 'a'\ntarget = {BIG}\n", "sweep.target: an integer of 401 digits is outside 64 bits"),
    (f"[sweep]\nname = 'a'\n[fixed]\nlr_muon = {BIG}\n", "fixed.lr_muon: an integer of 401 digits"),
    (f"[sweep]\nname = 'a'\n[resources]\ncpus_per_worker = {BIG}\n", "resources.cpus_per_worker: an integer"),
    (f"[sweep]\nname = 'a'\n[axes]\nlr_head = {{start = 0, stop = {BIG}, step = 1}}\n", "axes.lr_head.stop:"),
    ("[sweep]\nname = 'a'\n[axes]\nlr_head = {start = -1e308, stop = 1e308, step = 1e-300}\n",
     "axes.lr_head: too many values for a range (at most 10,000"),
    ("[sweep]\nname = 'a'\nbaseline = {lr_head = " + "9" * 5000 + "}\n[axes]\nlr_head = [1, 2]\n",
     "not a spec: Exceeds the limit (4300 digits)"),
    ("[sweep]\nname = 'a'\n[fixed]\nvocab_size = 4_000_000_000\n", "fixed.vocab_size: at most 65,536"),
    # item 15: repeats reached by a tiny step or by 1 and 1.0; a name with a final newline
    ("[sweep]\nname = 'a'\n[axes]\nlr_head = [1, 1.0]\n", "axes.lr_head: repeats the value 1.0"),
    ("[sweep]\nname = 'a'\n[axes]\nlr_head = {start = 0.0, stop = 1e-12, step = 1e-13}\n",
     "axes.lr_head: repeats the value"),
    ('[sweep]\nname = "x\\n"\n', "sweep.name: 'x\\n' must be letters"),
    # item 16: a warm-up that would never end; a step larger than the data
    ("[sweep]\nname = 'a'\n[fixed]\nwarmup_steps = 1_000_000_000_000_000\n", "fixed.warmup_steps: must be an integer in 0..1000"),
    ("[sweep]\nname = 'a'\n[resources]\nworkers = 1\n[fixed]\nseq_len = 1_000_000\nbatch_size = 1\n",
     "tokens_per_step: a train step reads 1,000,001 tokens, more than the built-in corpus"),
])
@pytest.mark.parametrize("dry", [True, False], ids=["dry-run", "run"])
def test_items14_to_16_are_refused_naming_the_field(body, said, dry, tmp_path, capsys):
    spec = tmp_path / "s.toml"
    spec.write_text(body)
    argv = ["sweep", str(spec), "--storage", str(tmp_path / "runs"), *(["--dry-run"] if dry else [])]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and said in err[0], err
    assert not (tmp_path / "runs").exists()


def test_item15_a_shard_matched_by_both_the_train_and_the_val_glob_is_refused(tmp_path):
    import numpy as np

    write_shard(tmp_path / "x_train_000.bin", np.arange(100))
    write_shard(tmp_path / "train_val_000.bin", np.arange(100))
    with pytest.raises(DataError, match="train_val_000.bin: named both a train and a val shard"):
        find_shards(tmp_path, "val")


def test_item14_a_curve_nested_too_deep_is_skipped_and_named(tmp_path, capsys):
    import json

    import pyarrow.parquet as pq

    from ablate.cli import main as results_main
    from ablate.results.curves import META_KEY, curve_path, write_curve

    def curve(trial_id, params_text, seed):
        rows = [{"sweep": "s", "trial_id": trial_id, "seed": seed, "num_iterations": 10, "step": step,
                 "train_time_ms": 100.0 * step, "val_loss": 10.0 - step / 2,
                 "status": "completed" if step == 10 else "running", "params": params_text}
                for step in (0, 10)]
        return write_curve(curve_path(tmp_path, "s", trial_id), rows)

    deep = "[" * 10_000 + "]" * 10_000
    good = curve("good", json.dumps({"lr": 0.1, "seed": 0}), 0)
    in_params = curve("params", json.dumps({"lr": 0.1, "deep": 0}).replace("0}", deep + "}"), 1)
    in_meta = curve("meta", json.dumps({"lr": 0.1, "seed": 2}), 2)  # the footer's metadata
    table = pq.read_table(in_meta)
    pq.write_table(table.replace_schema_metadata({**table.schema.metadata, META_KEY: deep.encode()}),
                   in_meta)
    invalid = curve("invalid", '{"lr": 0.1,', 3)

    assert results_main(["report", str(tmp_path)]) == 0
    captured = capsys.readouterr()
    assert sorted(captured.err.splitlines()) == sorted([
        f"ablate: warning: skipped {in_params}: params is nested too deeply to read",
        f"ablate: warning: skipped {in_meta}: its metadata is nested too deeply to read",
        f"ablate: warning: skipped {invalid}: params is not valid JSON "
        "(Expecting property name enclosed in double quotes: line 1 column 12 (char 11))"])
    assert "3 files skipped" in captured.out
    for path in (in_params, in_meta):  # named directly: refused, one line
        assert results_main(["report", str(path), str(good)]) == 2
        err = capsys.readouterr().err.splitlines()
        assert err == [f"ablate: {path}: {'params' if path == in_params else 'its metadata'} "
                       "is nested too deeply to read"]


@pytest.mark.parametrize("vocab", ["1e400", "-5", "0", "70000", "true", '"320"', "[" * 5000 + "]" * 5000])
def test_item14_a_meta_json_vocab_out_of_range_is_one_line_naming_the_file(tmp_path, data_dir, capsys, vocab):
    import shutil

    from ablate.cli import main as train_main

    data = tmp_path / "data"
    shutil.copytree(data_dir, data)
    (data / "meta.json").write_text(f'{{"vocab_size": {vocab}}}')
    out = tmp_path / "c.parquet"
    assert train_main(["train", "--data", str(data), "--out", str(out), "-s", "num_iterations=2"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"ablate: {data / 'meta.json'}: corrupt meta.json (vocab_size must be an integer in "
                   "1..65,536: shards hold uint16 tokens)"]
    assert not out.exists()
