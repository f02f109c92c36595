"""Item 3 of the reliability table: text from a folder (trial ids, states, configs, curve
labels, file names) reaches the terminal with its control characters escaped and never as
rich markup: no window title, cursor move or hyperlink can be planted."""

import json
import subprocess
import sys

from ablate.trainer.train import train

from conftest import tiny

HOSTILE = "x\x1b]0;pwned\x07\x1b[2J[link=http://evil]y[/link]\u202e"


def run(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ablate.cli", *argv], capture_output=True,
                          text=True, timeout=120, env={"COLUMNS": "200", "PATH": "/usr/bin:/bin"})


def clean(text: str) -> bool:
    return "\x1b" not in text and "\x07" not in text and "\u202e" not in text


def test_item03_report_and_status_escape_a_folders_text(tmp_path, data_dir):
    # a trial id with "/" can be no file's name in a curves/ folder (that would be a foreign
    # curve there): the curve is named directly
    curve = tmp_path / "runs" / "s" / "t.parquet"
    train(tiny(data_dir, num_iterations=4, val_every=2, sweep="s" + HOSTILE, trial_id="t" + HOSTILE,
               out=str(curve)))
    report = run("report", str(curve))
    assert report.returncode == 0, report.stderr
    assert clean(report.stdout) and clean(report.stderr)
    assert "\\x1b]0;pwned\\x07" in report.stdout and "[link=http://evil]" in report.stdout  # shown, inert
    markdown = run("report", str(curve), "--format", "markdown")
    assert clean(markdown.stdout) and "\\x1b" in markdown.stdout

    folder = tmp_path / "runs" / "s"
    (folder / "sweep.json").write_text(json.dumps({"spec": {"sweep": {"name": "s"}}, "settings": {
        "resources": {"workers": 1}}}))
    (folder / "trials.json").write_text(json.dumps({"t" + HOSTILE: {
        "state": "running", "config": {"seed": HOSTILE}, "num_iterations": 4}}))
    status = run("status", str(folder))
    assert status.returncode == 0, status.stderr
    assert clean(status.stdout) and "\\x1b" in status.stdout


def test_item03_a_refusal_naming_a_hostile_file_escapes_it(tmp_path):
    bad = tmp_path / ("spec" + "\x1b]0;pwned\x07" + ".toml")
    bad.write_text("not toml [")
    done = run("sweep", str(bad), "--dry-run")
    assert done.returncode == 2 and clean(done.stderr) and "\\x1b]0;pwned\\x07" in done.stderr
