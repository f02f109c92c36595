"""report --by record on imported record logs: per-record rows against each track's target,
the history in date order, each PR against its own baseline, the progression chart."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import scipy.stats as sps

from ablate.cli import main
from ablate.results.logs import import_logs

SHORT = {"2025-01-10_First": [3.2771, 3.2765, 3.2780], "2025-02-20_Second": [3.2790, 3.2801]}
TIMES = {"2025-01-10_First": [200.0, 201.5, 199.0], "2025-02-20_Second": [180.0, 181.0]}
PR = {"this_pr": ([3.2760, 3.2772, 3.2766, 3.2769], [170.0, 171.0, 170.5, 169.0]),
      "baseline": ([3.2775, 3.2779, 3.2770], [175.0, 176.0, 175.5])}
MEDIUM = [2.9181, 2.9193, 2.9188]


def log(final: float, seconds: float, total: int = 1000) -> str:
    return (f"step:0/{total} val_loss:10.8258 train_time:0ms step_avg:0.02ms\n"
            f"step:{total}/{total} val_loss:{final:.4f} train_time:{seconds * 1000:.0f}ms "
            f"step_avg:{seconds:.2f}ms\n")


@pytest.fixture
def storage(tmp_path: Path) -> Path:
    root = tmp_path / "records"
    files: dict[str, str] = {}
    for record, losses in SHORT.items():
        for k, (loss, t) in enumerate(zip(losses, TIMES[record])):
            files[f"track_1_short/{record}/{k}.txt"] = log(loss, t)
    for variant, (losses, times) in PR.items():
        for k, (loss, t) in enumerate(zip(losses, times)):
            files[f"track_1_short/2025-03-30_PR/{variant}/{k}.txt"] = log(loss, t)
    for k, loss in enumerate(MEDIUM):
        files[f"track_2_medium/2025-01-05_Med/{k}.txt"] = log(loss, 1400.0 + k, total=5000)
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    import_logs([root], tmp_path / "out")
    return tmp_path / "out"


def report_json(capsys: pytest.CaptureFixture[str], *argv: str) -> dict:
    assert main(["report", *argv, "--format", "json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_one_row_per_record_against_its_tracks_target(storage: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    data = report_json(capsys, str(storage), "--by", "record")
    rows = {r["record"]: r for r in data["rows"]}
    assert list(rows) == ["2025-01-10_First", "2025-02-20_Second", "2025-03-30_PR", "2025-01-05_Med"]
    for record, losses in SHORT.items():
        row = rows[record]
        ref = sps.ttest_1samp(losses, 3.28, alternative="less")
        assert row["runs"] == len(losses) and row["date"] == record[:10]
        assert row["p"] == pytest.approx(ref.pvalue, rel=1e-12)
        assert row["loss_mean"] == pytest.approx(np.mean(losses))
        assert row["time_s"] == pytest.approx(np.mean(TIMES[record]))
        assert row["passes"] == (ref.pvalue < 0.01)
    assert rows["2025-03-30_PR"]["runs"] == 4  # the baseline subfolder is left out
    medium = rows["2025-01-05_Med"]
    assert medium["target"] == 2.92 and medium["track"] == "medium"
    assert medium["p"] == pytest.approx(sps.ttest_1samp(MEDIUM, 2.92, alternative="less").pvalue)
    assert medium["steps"] == "5000"


def test_history_in_date_order_with_the_change_from_the_record_before(
        storage: Path, capsys: pytest.CaptureFixture[str]) -> None:
    history = report_json(capsys, str(storage), "--by", "record")["history"]
    short = [h for h in history if h["track"] == "short"]
    assert [h["record"] for h in short] == ["2025-01-10_First", "2025-02-20_Second", "2025-03-30_PR"]
    first, second = np.mean(TIMES["2025-01-10_First"]), np.mean(TIMES["2025-02-20_Second"])
    assert short[0]["change"] is None
    assert short[1]["change"] == pytest.approx(second - first)
    assert short[1]["change_pct"] == pytest.approx(100 * (second - first) / first)
    assert short[2]["time_s"] == pytest.approx(np.mean(PR["this_pr"][1]))


def test_a_pr_against_its_own_baseline_is_welchs_test(storage: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    (versus,) = report_json(capsys, str(storage), "--by", "record")["versus"]
    (pr_loss, pr_time), (base_loss, base_time) = PR["this_pr"], PR["baseline"]
    assert (versus["variant"], versus["baseline"], versus["runs"], versus["baseline_runs"]) == \
        ("this_pr", "baseline", 4, 3)
    assert versus["loss_delta"] == pytest.approx(np.mean(pr_loss) - np.mean(base_loss))
    assert versus["loss_p"] == pytest.approx(sps.ttest_ind(pr_loss, base_loss, equal_var=False).pvalue)
    assert versus["time_p"] == pytest.approx(sps.ttest_ind(pr_time, base_time, equal_var=False).pvalue)

    # by variant, every subfolder is a row; --baseline names the reference subfolder
    data = report_json(capsys, str(storage), "--by", "record,variant", "--baseline",
                       "variant=this_pr")
    assert [(r["record"], r["variant"]) for r in data["rows"] if r["record"] == "2025-03-30_PR"] \
        == [("2025-03-30_PR", "baseline"), ("2025-03-30_PR", "this_pr")]
    (versus,) = data["versus"]
    assert (versus["variant"], versus["baseline"]) == ("baseline", "this_pr")


def test_table_marks_rows_short_of_p_001_and_draws_the_progression(
        storage: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    plots = tmp_path / "plots"
    assert main(["report", str(storage), "--by", "record", "--format", "markdown",
                 "--plot", str(plots)]) == 0
    out = capsys.readouterr().out
    second = next(line for line in out.splitlines() if "2025-02-20_Second" in line)
    assert second.rstrip(" |").endswith("NO")  # mean above 3.28: no record
    assert "PR against its own baseline" in out
    chart = plots / "record_progression.png"
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main(["report", str(storage), "--by", "record", "--plot", str(plots)]) == 2
    assert "record_progression.png" in capsys.readouterr().err  # never overwritten


def test_bad_record_options_are_one_line(storage: Path, capsys: pytest.CaptureFixture[str],
                                         tmp_path: Path) -> None:
    for argv, needle in [(["--by", "record,nosuch"], "nosuch"),
                         (["--by", "record", "--baseline", "seed=1"], "--baseline")]:
        assert main(["report", str(storage), *argv]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and needle in err[0]
