"""import-logs on record trees written here: every log format, every skip reason, multi-run
files, copies, colliding names, --strict, re-import; export-log keeps the log's digits."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from ablate.cli import main
from ablate.results.curves import read_curve
from ablate.results.logs import import_logs, to_record_log

SOURCE = '''import os
import sys
def report(step, loss):
    # a literal step line inside the printed source is no data:
step:9/9 val_loss:1.0000 train_time:1ms step_avg:1.00ms
    print(f"step:{step}/{total} val_loss:{loss:.4f} train_time:{t:.0f}ms step_avg:{a:.2f}ms")
'''
RULE = "=" * 100
SMI = """Sat Mar  1 10:00:00 2025
+-----------------------------------------------------------------------------------------+
| NVIDIA-SMI 570.172.08             Driver Version: 570.172.08     CUDA Version: 12.8     |
|=========================================+========================+======================|
|   0  NVIDIA H100 80GB HBM3          On  |   00000000:19:00.0 Off |                    0 |
|   1  NVIDIA H100 80GB HBM3          On  |   00000000:3B:00.0 Off |                    0 |
+-----------------------------------------------------------------------------------------+
"""


def ms_log(final: float, total: int = 1000, seconds: float = 180.0) -> str:
    """A short-track style log: source, rules, nvidia-smi, training and validation lines."""
    half = total // 2
    return (f"{SOURCE}{RULE}\nRunning Python 3.12\n{SMI}{RULE}\n"
            f"step:0/{total} val_loss:10.8258 train_time:0ms step_avg:0.02ms\n"
            f"step:1/{total} train_time:250ms step_avg:nanms\n"
            f"step:{half}/{total} val_loss:4.1234 train_time:{seconds * 500:.0f}ms "
            f"step_avg:{seconds:.2f}ms\n"
            f"step:{total}/{total} val_loss:{final:.4f} train_time:{seconds * 1000:.0f}ms "
            f"step_avg:{seconds:.2f}ms\n"
            "peak memory allocated: 24467 MiB reserved: 24850 MiB\n")


def s_run(final: float, total: int = 3000, stop: int | None = None, mid: float = 3.61234) -> str:
    """An optimization-track run: time in s, 5 decimals, extra fields (one a word)."""
    last = stop or total
    return (f"step:0/{total} val_loss:10.82584 train_time:0.000s step_avg:nanms\n"
            f"step:1500/{total} val_loss:{mid:.5f} train_time:250.125s step_avg:166.75ms "
            f"ema_beta:0.9 handoff:keep\n"
            f"step:{last}/{total} val_loss:{final:.5f} train_time:503.985s step_avg:167.99ms "
            f"ema_beta:0.95 val_avg_loss:{final - 0.001:.5f}\n")


def write(root: Path, files: dict[str, str | bytes]) -> Path:
    for name, content in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
    return root


def params_of(out: Path) -> dict[str, dict]:
    return {path.stem: json.loads(pq.read_table(path, columns=["params"])["params"][0].as_py())
            for path in sorted((out / "records" / "curves").glob("*.parquet"))}


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A small records/ tree with every format and every reason to skip a file."""
    multi = s_run(3.27811) + s_run(3.27902, mid=3.61301) + s_run(3.27755, mid=3.61122)
    return write(tmp_path / "records", {
        "track_1_short/2025-03-01_Fast/a.txt": ms_log(3.2771),
        "track_1_short/2025-03-01_Fast/b.txt": ms_log(3.2769, seconds=181.0),
        "track_1_short/2025-03-01_Fast/baseline/a.txt": ms_log(3.2775, seconds=185.0),
        "track_1_short/2025-03-01_Fast/README.md": "not a log: other suffix, not looked at\n",
        "track_1_short/2025-03-01_Fast/train_gpt.py": SOURCE,
        "track_1_short/20250401_Faster/main.log": ms_log(3.2772, seconds=150.0),
        "track_1_short/20250401_Faster/copy/main.log": ms_log(3.2772, seconds=150.0),
        "track_1_short/2024-06-06_Old/run.log": "s:0 tel:10.968871\ns:0 trl:10.96\n"
                                                "s:512 tel:3.912345\ns:1024 tel:3.275959\n",
        "track_2_medium/2025-02-01_Medium/m.txt": ms_log(2.9190, total=5000, seconds=1400.0),
        "track_3_optimization/results/20260501_opt/multi.txt": multi,
        "track_3_optimization/results/20260501_opt/stopped.out": s_run(3.27988, stop=2950),
        "track_3_optimization/results/loose.stdout": s_run(3.27800),
        "track_1_short/2025-03-01_Fast/notes.txt": "nothing here\nstep:10/20 train_time:5ms\n",
        "track_1_short/2025-03-01_Fast/code.txt": f"{SOURCE}{RULE}\n",
        "track_1_short/2025-03-01_Fast/latin1.log": b"step:1/1 val_loss:3.0 \xe9\xff\n",
        "track_1_short/2025-03-01_Fast/bad.log": "step:9/5 val_loss:3.0 train_time:1ms step_avg:1ms\n",
        "track_1_short/2025-03-01_Fast/empty.out": "",
    })


SKIPS = {"notes.txt": "no step lines", "code.txt": "only inside the printed source",
         "latin1.log": "not UTF-8", "bad.log": "step 9/5", "empty.out": "no step lines"}


def test_a_whole_tree_imports_and_names_every_file_it_skips(tree: Path, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    assert main(["import-logs", str(tree), "--out", str(out)]) == 0
    lines = capsys.readouterr().out.splitlines()
    skipped = [line for line in lines if line.startswith("skipped ")]
    assert len(skipped) == len(SKIPS)
    for name, reason in SKIPS.items():
        assert any(name in line and reason in line for line in skipped), (name, skipped)
    assert [line for line in lines if line.startswith("merged ")] == [
        f"merged {tree}/track_1_short/20250401_Faster/main.log: the same run as "
        "track_1_short/20250401_Faster/copy/main.log"]
    # 3 + 1 (a copy merged) + 1 short, 1 medium, 3 + 1 + 1 optimization runs
    assert lines[-1] == (f"imported 11 runs from {len(SKIPS) + 10} files; skipped 5; "
                         f"merged 1 duplicate -> {out / 'records' / 'curves'}")

    params = params_of(out)
    a = params["track_1_short--2025-03-01_Fast--a.txt"]
    assert {k: a[k] for k in ("source", "record", "variant", "date", "track", "num_iterations",
                              "hardware")} == {
        "source": "track_1_short/2025-03-01_Fast/a.txt", "record": "2025-03-01_Fast",
        "variant": "", "date": "2025-03-01", "track": "short", "num_iterations": 1000,
        "hardware": "2xH100"}
    assert len(a["sha256"]) == 64
    assert params["track_1_short--2025-03-01_Fast--baseline--a.txt"]["variant"] == "baseline"
    kept = params["track_1_short--20250401_Faster--copy--main.log"]
    assert kept["date"] == "2025-04-01" and kept["copies"] == ["track_1_short/20250401_Faster/main.log"]
    assert params["track_2_medium--2025-02-01_Medium--m.txt"]["track"] == "medium"
    runs = [params[f"track_3_optimization--results--20260501_opt--multi.txt-run{k}"] for k in (1, 2, 3)]
    assert [r["run"] for r in runs] == [1, 2, 3]
    assert {r["record"] for r in runs} == {"20260501_opt"} and runs[0]["track"] == "optimization"
    assert len({r["sha256"] for r in runs}) == 3
    loose = params["track_3_optimization--results--loose.stdout"]
    assert loose["record"] == "loose" and loose["date"] == "" and loose["hardware"] == ""
    old = params["track_1_short--2024-06-06_Old--run.log"]
    assert old["num_iterations"] == 1024 and old["timed"] is False

    # a second import of the same tree adds nothing and says so
    assert main(["import-logs", str(tree), "--out", str(out)]) == 0
    assert capsys.readouterr().out.splitlines()[-1].endswith(
        "11 already imported (nothing new) -> " + str(out / "records" / "curves"))


def test_every_format_becomes_the_same_curve_columns(tree: Path, tmp_path: Path) -> None:
    import_logs([tree], tmp_path / "out")
    curves = tmp_path / "out" / "records" / "curves"
    ms = read_curve(curves / "track_1_short--2025-03-01_Fast--a.txt.parquet")
    assert ms["step"].to_pylist() == [0, 500, 1000]  # not the step line of the source
    assert ms["train_time_ms"].to_pylist() == [0.0, 90000.0, 180000.0]
    assert ms["val_loss"].to_pylist() == [10.8258, 4.1234, 3.2771]
    assert ms["step_avg_ms"].to_pylist() == [0.02, 180.0, 180.0]

    s = read_curve(curves / "track_3_optimization--results--20260501_opt--multi.txt-run2.parquet")
    assert s["train_time_ms"].to_pylist() == [0.0, 250125.0, 503985.0]
    assert s["val_loss"].to_pylist() == [10.82584, 3.61301, 3.27902]
    assert s["ema_beta"].to_pylist() == [None, 0.9, 0.95]  # an extra field: a column
    assert s["val_avg_loss"].to_pylist() == [None, None, 3.27802]
    assert "handoff" not in s.column_names  # a word, not a number
    assert s["status"].to_pylist()[-1] == "completed"

    stopped = read_curve(curves / "track_3_optimization--results--20260501_opt--stopped.out.parquet")
    assert stopped["step"].to_pylist()[-1] == 2950 and stopped["num_iterations"][0].as_py() == 3000
    assert stopped["status"].to_pylist()[-1] == "completed"  # stopped at the target: a run

    old = read_curve(curves / "track_1_short--2024-06-06_Old--run.log.parquet")
    assert old["step"].to_pylist() == [0, 512, 1024]
    assert old["val_loss"].to_pylist() == [10.968871, 3.912345, 3.275959]


def test_export_log_prints_the_logs_own_lines(tree: Path, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    import_logs([tree], tmp_path / "out")
    curves = tmp_path / "out" / "records" / "curves"
    for name, text in [("track_3_optimization--results--loose.stdout", s_run(3.27800)),
                       ("track_1_short--2025-03-01_Fast--a.txt", ms_log(3.2771))]:
        assert main(["export-log", str(curves / f"{name}.parquet")]) == 0
        exported = capsys.readouterr().out.splitlines()
        wanted = [line for line in text.splitlines()
                  if "val_loss:" in line and not line.startswith(("step:9/9", " "))]
        assert [line.split(" ema_beta")[0] for line in exported] == \
            [line.split(" ema_beta")[0] for line in wanted]


def test_multi_run_file_with_echoed_lines(tmp_path: Path) -> None:
    """A batch log: runs one after another, each ending with an echo of its last lines, the
    second without a step-0 line; the identical step-0 lines of runs 1 and 3 start runs."""
    run1, run3 = s_run(3.27811), s_run(3.27755, mid=3.61122)
    run2 = "\n".join(s_run(3.27902, mid=3.61301).splitlines()[1:]) + "\n"
    echo = run1.splitlines()[-1] + "\n"
    write(tmp_path / "logs", {"batch.txt": f"=== seed 1 ===\n{run1}{echo}=== seed 2 ===\n"
                                           f"{run2}=== seed 3 ===\n{run3}{run3.splitlines()[-1]}\n"})
    result = import_logs([tmp_path / "logs"], tmp_path / "out")
    assert [read_curve(p)["step"].to_pylist() for p in result.written] == [
        [0, 1500, 3000], [1500, 3000], [0, 1500, 3000]]
    assert [read_curve(p)["val_loss"].to_pylist()[-1] for p in result.written] == [
        3.27811, 3.27902, 3.27755]


def test_colliding_file_names_get_distinct_ids(tmp_path: Path) -> None:
    write(tmp_path / "a", {"main.log": ms_log(3.2771)})
    write(tmp_path / "b", {"main.log": ms_log(3.2790)})
    result = import_logs([tmp_path / "a", tmp_path / "b"], tmp_path / "out")
    names = sorted(p.name for p in result.written)
    assert len(names) == 2 and all(n.startswith("main.log-") for n in names)
    params = params_of(tmp_path / "out")
    assert {p["record"] for p in params.values()} == {"a", "b"}
    assert {p["source"] for p in params.values()} == {"main.log"}
    # the same two again: both already there, under the same ids
    again = import_logs([tmp_path / "a", tmp_path / "b"], tmp_path / "out")
    assert again.written == [] and sorted(p.name for p in again.present) == names


def test_strict_refuses_at_the_first_skip_and_writes_nothing(tree: Path, tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    assert main(["import-logs", str(tree), "--out", str(out), "--strict"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--strict" in err[0] and any(n in err[0] for n in SKIPS)
    assert not out.exists()


def test_nothing_to_import_is_one_line_and_exit_2(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    write(tmp_path / "logs", {"a.txt": "hello\n", "b.log": "nothing\n"})
    assert main(["import-logs", str(tmp_path / "logs"), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no run imported from 2 files" in err[0] and "a.txt" in err[0]
    assert main(["import-logs", str(tmp_path / "nowhere"), "--out", str(tmp_path / "out")]) == 2
    assert "nowhere: no such file or directory" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_a_fifo_in_a_folder_is_skipped_not_read(tmp_path: Path) -> None:
    write(tmp_path / "logs", {"a.txt": ms_log(3.2771)})
    os.mkfifo(tmp_path / "logs" / "pipe.txt")
    result = import_logs([tmp_path / "logs"], tmp_path / "out")
    assert len(result.written) == 1
    assert [(s.path.name, s.reason) for s in result.skipped] == [("pipe.txt", "not a regular file")]


def test_a_log_outside_a_track_folder_takes_its_track_from_its_loss(tmp_path: Path) -> None:
    write(tmp_path / "mine", {"2025-05-05_Idea/v1/r.txt": ms_log(2.9201, total=5000),
                              "2025-05-05_Idea/r.txt": ms_log(3.2801)})
    import_logs([tmp_path / "mine"], tmp_path / "out")
    params = params_of(tmp_path / "out")
    medium = params["2025-05-05_Idea--v1--r.txt"]
    short = params["2025-05-05_Idea--r.txt"]
    assert (medium["track"], medium["record"], medium["variant"]) == ("medium", "2025-05-05_Idea", "v1")
    assert (short["track"], short["variant"], short["date"]) == ("short", "", "2025-05-05")
    assert to_record_log(read_curve(tmp_path / "out" / "records" / "curves" /
                                    "2025-05-05_Idea--r.txt.parquet")).splitlines()[-1] == \
        "step:1000/1000 val_loss:3.2801 train_time:180000ms step_avg:180.00ms"
