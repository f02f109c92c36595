"""How a report's text fits where it goes: piped output takes `COLUMNS`, else 80 columns;
a narrow table splits or wraps its headers but never cuts a number; the terminal table and
the Markdown table show their columns in one order."""

from __future__ import annotations

import io
import itertools
import os
import subprocess
import sys
from pathlib import Path

import pytest
from test_results_identity import run, trial

from ablate.results import build_report, write_report
from ablate.results.render import baseline_rows, budget_rows, config_rows, table_width


def sweep(root: Path) -> Path:
    """3 x 2 configs x 2 seeds with a long numeric label (lr_head) among the axes."""
    for k, init, seed in itertools.product([0, 1, 2], ["zero", "one"], [0, 1]):
        trial(root, f"t{k}{init}{seed}", 3.2 - 0.05 * k + 0.01 * seed + 0.02 * (init == "one"),
              1234.5 + 10 * k + seed, extra_embeddings=k, lambda_init=init, seed=seed,
              lr_head=0.0081234 * (k + 1))
    return root


def numbers(report) -> set[str]:
    """Every cell of the three tables that is not a config label (those may fold)."""
    labels = {"extra_embeddings", "lambda_init", "lr_head", "config"}
    return {cell for headers, rows in (config_rows(report), baseline_rows(report), budget_rows(report))
            for row in rows for header, cell in zip(headers, row) if header not in labels and cell}


def widest(text: str) -> int:
    return max(len(line.rstrip()) for line in text.splitlines())


@pytest.mark.parametrize("columns", ["30", "50", "60", "97"])
def test_piped_report_honours_columns_and_keeps_numbers_whole(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
        columns: str) -> None:
    sweep(tmp_path)
    monkeypatch.setenv("COLUMNS", columns)
    argv = ["report", str(tmp_path), "--target", "3.25", "--baseline", "extra_embeddings=0,lambda_init=zero"]
    code, out, err = run(argv, capsys)
    assert code == 0 and err == ""
    # At 30 the baseline table's 95% CI beside `#`, test and n needs 1 + 6 + 7 + 18 cells
    # and 13 rules: 45 columns, taken, since the numbers win over the width.
    assert widest(out) <= max(int(columns), 45)
    report = build_report([tmp_path], target=3.25, baseline="extra_embeddings=0,lambda_init=zero")
    missing = [cell for cell in numbers(report) if cell not in out]
    assert not missing
    # the config labels are in the table, even where they need a part of their own
    assert "0.024370199999999998" in out and "0.0081234" in out


def test_piped_report_without_columns_is_80_wide(tmp_path: Path) -> None:
    """Through a real pipe, as `ablate report DIR | less` or a log file gets it."""
    sweep(tmp_path)
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    done = subprocess.run([sys.executable, "-m", "ablate.results", "report", str(tmp_path),
                           "--target", "3.25"], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert 70 < widest(done.stdout) <= 80  # used, not exceeded: the table is wider than 80 in one piece


def test_table_width_rules() -> None:
    pipe = io.StringIO()
    assert table_width(pipe, environ={}) == 80
    assert table_width(pipe, environ={"COLUMNS": "132"}) == 132
    assert table_width(pipe, 50, environ={"COLUMNS": "132"}) == 50  # an explicit width wins
    for stale in ("", "abc", "0", "-5", "12"):  # unset, not a number, too narrow for any table
        assert table_width(pipe, environ={"COLUMNS": stale}) == 80


def header_cells(line: str) -> list[str]:
    return [cell.strip() for cell in line.strip("┃ \n").split("┃")]


def test_terminal_and_markdown_tables_share_one_column_order(tmp_path: Path) -> None:
    report = build_report([sweep(tmp_path)], target=3.25,
                          baseline="extra_embeddings=0,lambda_init=zero")
    wide = io.StringIO()
    write_report(report, wide, "table", width=400)
    terminal = [header_cells(line) for line in wide.getvalue().splitlines() if line.startswith("┃")]
    md = io.StringIO()
    write_report(report, md, "markdown")
    lines = md.getvalue().splitlines()
    markdown = [[c.strip() for c in line.strip("| ").split("|")]  # the line above each `| ---`
                for line, below in zip(lines, lines[1:]) if below.startswith("| ---")]
    assert terminal == markdown == [config_rows(report)[0], baseline_rows(report)[0],
                                    budget_rows(report)[0]]
    assert terminal[0][:4] == ["#", "lr_head", "extra_embeddings", "lambda_init"]
    # Split over parts at 80 columns, every row still reads in that order.
    narrow = io.StringIO()
    write_report(report, narrow, "table", width=80)
    headers, rows = config_rows(report)
    for number, row in enumerate(rows, 1):
        table = narrow.getvalue().split("Against baseline")[0]
        lines = [line for line in table.splitlines() if line.startswith(f"│ {number} │")]
        assert len(lines) > 1  # the table was split
        shown = []
        for line in lines:
            cells = [c.strip() for c in line.strip("│ ").split("│")][1:]  # after `#`
            assert cells == sorted(cells, key=row.index)  # a part keeps the order
            shown += cells
        assert [c for c in shown if c] == [c for c in row[1:] if c]  # the parts, in order, are the row
