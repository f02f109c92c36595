"""Bad input, table-driven: every malformed spec, flag, shard, Parquet file or log gets one
line naming the thing, exit status 2, no traceback, and nothing written or overwritten."""

from __future__ import annotations

import pickle
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ablate.cli import main, run_command
from ablate.results.curves import SCHEMA_VERSION, VERSION_KEY, curve_path, write_curve
from ablate.trainer.data import write_shard

SPEC_OK = '[sweep]\nname = "x"\n'


def spec(body: str) -> Callable[[Path], list[str]]:
    def make(tmp: Path) -> list[str]:
        (tmp / "s.toml").write_text(body)
        return ["sweep", str(tmp / "s.toml"), "--storage", str(tmp / "runs")]
    return make


def shards(**bad: bytes) -> Callable[[Path], list[str]]:
    """A data folder with a good val shard and the given train shard contents."""
    def make(tmp: Path) -> list[str]:
        d = tmp / "data"
        write_shard(d / "d_val_000000.bin", np.arange(5000) % 256)
        for name, content in bad.items():
            (d / f"d_{name}_000000.bin").write_bytes(content)
        return ["train", "--data", str(d), "--out", str(tmp / "c.parquet")]
    return make


def fifo(tmp: Path) -> list[str]:
    import os

    os.mkfifo(tmp / "s.toml")  # reading it would block for ever
    return ["sweep", str(tmp / "s.toml")]


def log_fifo(tmp: Path) -> list[str]:
    import os

    os.mkfifo(tmp / "a.txt")
    return ["import-logs", str(tmp / "a.txt"), "--out", str(tmp / "o")]


def header(magic=20240520, version=1, n=100) -> bytes:
    h = np.zeros(256, dtype=np.int32)
    h[:3] = magic, version, n
    return h.tobytes()


def files(argv: list[str], **contents: bytes | str) -> Callable[[Path], list[str]]:
    """Write the named files into the temp folder; `{tmp}` in argv is that folder."""
    def make(tmp: Path) -> list[str]:
        for name, content in contents.items():
            path = tmp / name.replace("__", "/")
            path.parent.mkdir(parents=True, exist_ok=True)
            (path.write_bytes if isinstance(content, bytes) else path.write_text)(content)
        return [a.replace("{tmp}", str(tmp)) for a in argv]
    return make


def curve_file(tmp: Path, version: int = SCHEMA_VERSION, foreign: bool = False) -> Path:
    path = curve_path(tmp / "runs", "s", "t1")
    if foreign:
        path.parent.mkdir(parents=True)
        pq.write_table(pa.table({"a": [1, 2]}), path)
        return path
    write_curve(path, [dict(sweep="s", trial_id="t1", step=0, val_loss=3.0, train_time_ms=0.0,
                            status="completed", seed=0)])
    if version != SCHEMA_VERSION:
        t = pq.read_table(path)
        pq.write_table(t.replace_schema_metadata({VERSION_KEY: str(version).encode()}), path)
    return path


def curve_with(tmp: Path, column: str, values: list, version: bytes | None = None) -> Path:
    """A good curve file with one column replaced (or its schema version, if given)."""
    path = curve_file(tmp)
    t = pq.read_table(path)
    if version is not None:
        t = t.replace_schema_metadata({**t.schema.metadata, VERSION_KEY: version})
    else:
        i = t.schema.get_field_index(column)
        t = t.set_column(i, t.schema.field(i), pa.array(values, t.schema.field(i).type))
    pq.write_table(t, path)
    return path


def bad_curve(command: str, column: str = "", values: list | None = None,
              version: bytes | None = None) -> Callable[[Path], list[str]]:
    def make(tmp: Path) -> list[str]:
        return [command, str(curve_with(tmp, column, values or [], version))]
    return make


def loop(argv: list[str]) -> Callable[[Path], list[str]]:
    """`{tmp}/loop` is a symlink to itself."""
    def make(tmp: Path) -> list[str]:
        (tmp / "loop").symlink_to(tmp / "loop")
        return [a.replace("{tmp}", str(tmp)) for a in argv]
    return make


def linked_out(tmp: Path) -> list[str]:
    """A sweep folder whose curves folder is a link to somewhere else."""
    (tmp / "d").mkdir()
    (tmp / "elsewhere").mkdir()
    (tmp / "d" / "sweep.json").write_text("{}")
    (tmp / "d" / "curves").symlink_to(tmp / "elsewhere")
    return ["resume", str(tmp / "d")]


def tokens_beyond_vocab(tmp: Path) -> list[str]:
    d = tmp / "data"
    write_shard(d / "d_val_000000.bin", np.arange(20000) % 256)
    write_shard(d / "d_train_000000.bin", np.full(20000, 4000))
    return ["train", "--data", str(d), "--out", str(tmp / "c.parquet"), "-s", "num_iterations=2"]


def parquet(**kw) -> Callable[[Path], list[str]]:
    def make(tmp: Path) -> list[str]:
        return ["report", str(curve_file(tmp, **kw))]
    return make


def parquet_with(flags: list[str]) -> Callable[[Path], list[str]]:
    def make(tmp: Path) -> list[str]:
        return ["report", str(curve_file(tmp)), *flags]
    return make


CASES = {
    # --- spec files -----------------------------------------------------------------------
    "spec unknown key": (spec(SPEC_OK + "bogus = 1\n"), "sweep.bogus"),
    "spec unknown section": (spec(SPEC_OK + "[extra]\na = 1\n"), "extra: unknown section"),
    "spec wrong type": (spec(SPEC_OK + "[fixed]\nnum_iterations = 'ten'\n"), "fixed.num_iterations"),
    "spec k out of range": (spec(SPEC_OK + "[axes]\nextra_embeddings = [7]\n"), "axes.extra_embeddings"),
    "spec negative seeds": (spec('[sweep]\nname = "x"\nseeds = -2\n'), "sweep.seeds"),
    "spec empty seeds": (spec('[sweep]\nname = "x"\nseeds = []\n'), "sweep.seeds"),
    "spec repeated seed": (spec('[sweep]\nname = "x"\nseeds = [1, 1]\n'), "sweep.seeds"),
    "spec bad lambda_init": (spec(SPEC_OK + "[axes]\nlambda_init = ['two']\n"), "axes.lambda_init"),
    "spec zero workers": (spec(SPEC_OK + "[resources]\nworkers = 0\n"), "resources.workers"),
    "spec negative gpus": (spec(SPEC_OK + "[resources]\ngpus_per_worker = -1\n"), "resources"),
    "spec name escapes storage": (spec('[sweep]\nname = "../../etc"\n'), "sweep.name"),
    "spec absolute name": (spec('[sweep]\nname = "/tmp/x"\n'), "sweep.name"),
    "spec not TOML": (spec('[sweep\nname = "x"'), "not valid TOML"),
    "spec not UTF-8": (files(["sweep", "{tmp}/s.toml"], **{"s.toml": b"\xff\xfe[sweep]"}), "s.toml"),
    "spec missing": (files(["sweep", "{tmp}/none.toml"]), "no such spec file"),
    "spec is a folder": (files(["sweep", "{tmp}/d"], **{"d__f": "x"}), "is a folder"),
    "spec data missing": (spec(SPEC_OK + 'data = "/no/such/data"\n'), "sweep.data"),
    "spec empty axis": (spec(SPEC_OK + "[axes]\nextra_embeddings = []\n"), "axes.extra_embeddings"),
    "spec axis also fixed": (spec(SPEC_OK + "[fixed]\nseq_len = 32\n[axes]\nseq_len = [16]\n"), "axes.seq_len"),
    "spec reserved key": (spec(SPEC_OK + "[fixed]\nseed = 3\n"), "fixed.seed"),
    "spec zero-gradient trap": (spec(SPEC_OK + "[fixed]\ntoken_lambdas = true\ntoken_lambda_init = 0.0\n"),
                                "fixed.token_lambda_init"),
    "spec unknown model field": (spec(SPEC_OK + "[fixed]\nwarp = 9\n"), "fixed.warp"),
    "spec heads do not divide": (spec(SPEC_OK + "[fixed]\nn_head = 3\n"), "fixed.n_head"),
    "spec repeated axis value": (spec(SPEC_OK + "[axes]\nextra_embeddings = [0, 0]\n"),
                                 "axes.extra_embeddings: repeats the value 0"),
    "spec asha over budgets": (spec(SPEC_OK + "[axes]\nnum_iterations = [10, 20]\n"
                                    "[early_stopping]\nkind = 'asha'\n"), "early_stopping.kind"),
    "spec target nan": (spec(SPEC_OK + "target = nan\n"), "sweep.target: must be a finite number"),
    "spec target inf": (spec(SPEC_OK + "target = inf\n"), "sweep.target: must be a finite number"),
    "spec baseline not an axis": (spec(SPEC_OK + "baseline = {extra_embeddings = 0}\n"),
                                  "sweep.baseline.extra_embeddings: not an axis"),
    "spec baseline off the grid": (spec(SPEC_OK + "baseline = {extra_embeddings = 3}\n"
                                        "[axes]\nextra_embeddings = [0, 1]\n"), "not among the axis values"),
    "spec gpu memory zero": (spec(SPEC_OK + "[resources]\ngpu_memory_gb = 0\n"),
                             "resources.gpu_memory_gb"),
    "spec over the GPU memory": (spec(SPEC_OK + 'preset = "medium"\n[resources]\nworkers = 1\n'
                                      "gpus_per_worker = 1\n[fixed]\nmicro_tokens = 524288\n"),
                                 "resources.gpu_memory_gb"),
    "spec gang larger than the machine": (spec(SPEC_OK + "[resources]\ncpus_per_worker = 512\n"),
                                          "a trial needs 1024 CPUs"),
    "spec retries without end": (spec(SPEC_OK + "max_failures = 1000000000\n"), "sweep.max_failures"),
    "spec is a FIFO": (fifo, "not a regular file"),
    "spec seed count huge": (spec('[sweep]\nname = "x"\nseeds = 200000000\n'), "sweep.seeds"),
    "spec seed above 2^63": (spec('[sweep]\nname = "x"\nseeds = [9223372036854775808]\n'), "sweep.seeds"),
    "spec nested 20000 deep": (spec(SPEC_OK + "[fixed]\nadam_betas = " + "[" * 20000 + "]" * 20000 + "\n"),
                               "s.toml: cannot read"),
    "spec NUL in a path": (spec(SPEC_OK + 'data = "a\\u0000b"\n'), "sweep.data: contains a NUL"),
    "spec symlink loop": (loop(["sweep", "{tmp}/loop"]), "Too many levels of symbolic links"),
    "address nobody answers": (files(["sweep", "{tmp}/s.toml", "--storage", "{tmp}/runs",
                                      "--address", "127.0.0.1:1"], **{"s.toml": SPEC_OK}),
                               "--address 127.0.0.1:1: no Ray cluster answers there"),
    "address malformed": (files(["sweep", "{tmp}/s.toml", "--storage", "{tmp}/runs", "--address", "http://x:99999"],
                                **{"s.toml": SPEC_OK}), "expected auto, host:port or ray://host:port"),
    "status of a folder that is no sweep": (files(["status", "{tmp}/d"], **{"d__x": "x"}),
                                            "not a sweep folder"),
    "status sweep.json is a folder": (files(["status", "{tmp}/d"], **{"d__sweep.json__x": "x"}),
                                      "sweep.json: cannot read"),
    "resume sweep.json names another folder": (
        files(["resume", "{tmp}/d"], **{"d__sweep.json": '{"spec": {"sweep": {"name": "../../x"}}}'}),
        "sweep.name"),
    "resume a folder linked out": (linked_out, "a link that leads out of the sweep folder"),
    "train adam_betas out of range": (files(["train", "-s", "adam_betas=[0.9,1.5]"]), "adam_betas"),
    "train muon_momentum nan": (files(["train", "-s", "muon_momentum=nan"]), "muon_momentum"),
    "train lr infinite": (files(["train", "-s", "lr_head=inf"]), "lr_head: must be finite"),
    "train model scale infinite": (files(["train", "-s", "attn_scale=inf"]), "attn_scale: must be finite"),
    "train steps beyond int32": (files(["train", "-s", "num_iterations=3000000000"]), "num_iterations"),
    "spec grid beyond any sweep": (files(["sweep", "{tmp}/s.toml", "--yes"], **{"s.toml": SPEC_OK + "seeds = 10000\n"
                                          "[axes]\nlr_head = [" + ", ".join(f"0.{i:04d}" for i in range(1, 12)) + "]\n"}),
                                   "one sweep runs at most 100,000"),
    "max-trials unbounded": (files(["sweep", "{tmp}/s.toml", "--max-trials", "1000000000"], **{"s.toml": SPEC_OK}),
                             "--max-trials"),
    "search step grid unbounded": (files(["search-steps", "{tmp}/s.toml"], **{"s.toml": SPEC_OK + "[search]\n"
                                          "min_steps = 1\nmax_steps = 1000000000\ngranularity = 1\ntarget = 3.0\n"}),
                                   "search.granularity"),
    "search gang larger than the machine": (files(["search-steps", "{tmp}/s.toml", "--storage", "{tmp}/runs"],
                                                  **{"s.toml": SPEC_OK + "[resources]\ncpus_per_worker = 512\n[search]\n"
                                                     "min_steps = 10\nmax_steps = 20\ngranularity = 10\ntarget = 3.0\n"}),
                                            "a trial needs 1024 CPUs"),
    "train checkpoint dir is a file": (files(["train", "--checkpoint-dir", "{tmp}/f"], **{"f": "a file"}),
                                       "checkpoint-dir"),
    "train out is a folder": (files(["train", "--out", "{tmp}/d", "--force"], **{"d__x": "x"}), "is a folder"),
    "train tokens beyond the vocabulary": (tokens_beyond_vocab, "beyond the model's vocab_size"),
    "storage is a file": (files(["sweep", "{tmp}/s.toml", "--storage", "{tmp}/f"],
                                **{"s.toml": SPEC_OK, "f": "a file"}), "storage root is a file"),
    "train negative seed": (files(["train", "-s", "seed=-1"]), "seed: must be an integer"),
    "stats target nan": (files(["stats", "--target", "nan", "1", "2"]), "--target"),
    "report target inf": (files(["report", "{tmp}", "--target", "inf"]), "--target"),
    "report resamples unbounded": (parquet_with(["--resamples", "1000000000000"]), "--resamples"),
    "log is a FIFO": (log_fifo, "not a regular file"),
    "data builtin over a meta.json": (files(["data", "builtin", "--out", "{tmp}/d"], **{"d__meta.json": "{}"}),
                                      "refusing to overwrite"),
    "text the same file twice": (files(["data", "prepare", "--text", "{tmp}/t.txt", "{tmp}/t.txt",
                                        "--out", "{tmp}/d"], **{"t.txt": "one document\n"}),
                                 "need at least 2 documents"),
    # --- CLI flags ------------------------------------------------------------------------
    "unknown command": (files(["frobnicate"]), "invalid choice"),
    "train unknown field": (files(["train", "-s", "foo=1"]), "foo: unknown field"),
    "train malformed --set": (files(["train", "-s", "extra_embeddings"]), "expected key=value"),
    "train unknown preset": (files(["train", "--preset", "huge"]), "preset: unknown preset"),
    "train negative steps": (files(["train", "-s", "num_iterations=-1"]), "num_iterations"),
    "train checkpoint not at val": (files(["train", "-s", "checkpoint_every=7"]), "checkpoint_every"),
    "train wrong type": (files(["train", "-s", "lambda_init=3"]), "lambda_init"),
    "train resume missing": (files(["train", "--data", "{tmp}", "--resume", "{tmp}/nockpt"]), "resume"),
    "report bad format": (files(["report", "{tmp}", "--format", "xml"]), "--format"),
    "report alpha out of range": (files(["report", "{tmp}", "--alpha", "2"]), "--alpha"),
    "stats target not a number": (files(["stats", "--target", "x", "1", "2"]), "--target"),
    "stats without target": (files(["stats", "2.9", "2.91"]), "--target"),
    # --- shard files ----------------------------------------------------------------------
    "shard bad magic": (shards(train=header(magic=7) + bytes(200)), "bad magic"),
    "shard truncated": (shards(train=header(n=100) + bytes(50)), "truncated"),
    "shard wrong dtype": (shards(train=header(n=100) + bytes(400)), "not uint16"),
    "shard empty": (shards(train=header(n=0)), "empty shard"),
    "shard header only half": (shards(train=bytes(512)), "truncated header"),
    "shard wrong version": (shards(train=header(version=2) + bytes(200)), "version 2"),
    "no train shards": (shards(), "no train shards"),
    "data folder missing": (files(["train", "--data", "{tmp}/nodata"]), "data folder not found"),
    # --- Parquet files --------------------------------------------------------------------
    "parquet corrupt": (files(["report", "{tmp}/c.parquet"], **{"c.parquet": b"PAR1garbage"}), "c.parquet"),
    "parquet foreign schema": (parquet(foreign=True), "not an ablate curve"),
    "parquet future version": (parquet(version=SCHEMA_VERSION + 1), "newer than this ablate reads"),
    "parquet schema version not a number": (bad_curve("report", version=b"two"), "is not a number"),
    "parquet times infinite": (bad_curve("report", "train_time_ms", [float("inf")]),
                               "train_time_ms is negative or not finite"),
    "parquet times null": (bad_curve("export-log", "train_time_ms", [None]), "train_time_ms is null"),
    "parquet steps negative": (bad_curve("export-log", "step", [-3]), "step is negative"),
    "export-log of a folder": (files(["export-log", "{tmp}/d"], **{"d__x": "x"}), "d"),
    "inspect --plot into a file": (files(["inspect", "{tmp}/runs", "--plot", "{tmp}/f"], **{"f": "a file", "runs__x": "x"}),
                                   "--plot"),
    "report a symlink loop": (loop(["report", "{tmp}/loop"]), "loop"),
    "report nothing there": (files(["report", "{tmp}/missing"]), "missing"),
    # --- published logs -------------------------------------------------------------------
    "log garbage only": (files(["import-logs", "{tmp}/a.txt", "--out", "{tmp}/o"],
                               **{"a.txt": "hello\nstep:x/y val_loss:z\n"}), "a.txt"),
    "log missing": (files(["import-logs", "{tmp}/none.txt", "--out", "{tmp}/o"]), "none.txt"),
    "log binary": (files(["import-logs", "{tmp}/b.txt", "--out", "{tmp}/o"],
                         **{"b.txt": bytes(range(256)) * 4}), "b.txt"),
    "log bad sweep name": (files(["import-logs", "{tmp}/a.txt", "--out", "{tmp}/o", "--sweep", "../x"],
                                 **{"a.txt": "step:1/1 val_loss:3.0 train_time:1ms step_avg:1.00ms\n"}),
                           "--sweep"),
    "log step beyond int32": (files(["import-logs", "{tmp}/a.txt", "--out", "{tmp}/o"],
                                    **{"a.txt": "step:99999999999/99999999999 val_loss:3.0 "
                                                "train_time:1ms step_avg:1.00ms\n"}), "at most 2,147,483,647"),
    "log step beyond its total": (files(["import-logs", "{tmp}/a.txt", "--out", "{tmp}/o"],
                                        **{"a.txt": "step:9/5 val_loss:3.0 train_time:1ms step_avg:1.00ms\n"}),
                                  "step 9/5"),
    # --- text for shards ------------------------------------------------------------------
    "text missing": (files(["data", "prepare", "--text", "{tmp}/none.txt", "--out", "{tmp}/d"]), "none.txt"),
    "text endless (a device)": (files(["data", "prepare", "--text", "/dev/zero", "--out", "{tmp}/d"]),
                                "/dev/zero: not a regular file"),
    "text not UTF-8": (files(["data", "prepare", "--text", "{tmp}/t.txt", "--out", "{tmp}/d"],
                             **{"t.txt": b"\xff\xfe\xfa"}), "not UTF-8"),
}


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in folder.rglob("*") if p.is_file() or p.is_fifo()}


def run(argv: list[str]) -> int:
    try:
        return main(argv)
    except SystemExit as e:  # argparse's own usage errors
        return e.code


def test_there_are_at_least_forty_cases():
    assert len(CASES) >= 40


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_is_refused_in_one_line(name, tmp_path, capsys, monkeypatch):
    make, fragment = CASES[name]
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    argv = make(work)
    before = snapshot(work)
    assert run(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith("ablate"), err
    assert fragment in err, err
    assert "Traceback" not in err
    assert snapshot(work) == before  # nothing written, nothing overwritten


def test_existing_outputs_are_never_overwritten(tmp_path, capsys, data_dir):
    out = tmp_path / "c.parquet"
    out.write_bytes(b"precious")
    assert run(["train", "--data", str(data_dir), "--out", str(out)]) == 2
    assert out.read_bytes() == b"precious"
    log = tmp_path / "a.txt"
    log.write_text("step:1/1 val_loss:3.0000 train_time:1ms step_avg:1.00ms\n")
    assert run(["import-logs", str(log), "--out", str(tmp_path / "o")]) == 0
    written = next((tmp_path / "o").rglob("*.parquet"))
    stamp = written.stat().st_mtime_ns
    assert run(["import-logs", str(log), "--out", str(tmp_path / "o")]) == 0  # the same run
    assert "nothing new" in capsys.readouterr().out
    log.write_text("step:1/1 val_loss:3.5000 train_time:1ms step_avg:1.00ms\n")
    assert run(["import-logs", str(log), "--out", str(tmp_path / "o")]) == 2  # another run
    assert written.stat().st_mtime_ns == stamp
    assert "refusing to overwrite" in capsys.readouterr().err
    assert run(["data", "builtin", "--out", str(data_dir)]) == 2


def test_the_embedded_ray_refuses_to_start_without_token_auth(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    (tmp_path / "s.toml").write_text(SPEC_OK)
    assert run(["sweep", str(tmp_path / "s.toml"), "--storage", str(tmp_path / "runs")]) == 2
    assert "RAY_AUTH_MODE=disabled" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("error, line", [
    (OSError(28, "No space left on device", "/x/c.parquet"), "/x/c.parquet: No space left on device"),
    (ConnectionError("the head went away"), "ConnectionError: the head went away"),
    (MemoryError(), "out of memory: the input is too large for this machine"),
    (RecursionError("maximum recursion depth exceeded"), "the input is nested too deeply to read"),
    (pickle.UnpicklingError("invalid load key"), "UnpicklingError: invalid load key"),
    (pa.ArrowInvalid("Value 99999999999 too large"), "ArrowInvalid: Value 99999999999 too large"),
])
def test_the_one_edge_turns_what_the_world_does_into_one_line(error, line, capsys):
    def command(args):
        raise error
    assert run_command(SimpleNamespace(func=command)) == 2
    assert capsys.readouterr().err == f"ablate: {line}\n"


def test_a_bug_keeps_its_traceback():
    with pytest.raises(KeyError):
        run_command(SimpleNamespace(func=lambda args: {}["missing"]))
