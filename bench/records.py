"""Benchmark: import modded-nanogpt's whole `records/` tree and read its history.

Times, each as the command a user types (a fresh Python process, imports included):
`ablate import-logs RECORDS --out TMP` (the first import), the same again (nothing new),
and `ablate report TMP --by record`, with the counts the import printed. The tree is not
part of this repository; fetch it first:

    git clone https://github.com/KellerJordan/modded-nanogpt /tmp/modded-nanogpt
    .venv/bin/python bench/records.py /tmp/modded-nanogpt/records
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def timed(argv: list[str]) -> tuple[float, str]:
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "ablate.results", *argv], capture_output=True,
                          text=True, env={**os.environ, "COLUMNS": "200"})
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)}: exit {done.returncode}\n{done.stderr}")
    return seconds, done.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").partition("\n")[0])
    parser.add_argument("records", type=Path, help="modded-nanogpt's records/ folder")
    args = parser.parse_args()
    files = [p for p in args.records.rglob("*") if p.is_file()]
    size = sum(p.stat().st_size for p in files)
    print(f"tree: {args.records} ({len(files):,} files, {size / 1e6:.0f} MB); "
          f"{os.cpu_count()} CPU cores")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out"
        seconds, text = timed(["import-logs", str(args.records), "--out", str(out)])
        lines = text.splitlines()
        reasons: dict[str, int] = {}
        for line in lines:
            if line.startswith("skipped "):
                reason = line.rsplit(": ", 1)[1]
                reasons[reason] = reasons.get(reason, 0) + 1
        print(f"import:    {seconds:5.2f} s  {lines[-1]}")
        for reason, count in sorted(reasons.items(), key=lambda kv: -kv[1]):
            print(f"           skipped {count:4d} x {reason}")
        seconds, text = timed(["import-logs", str(args.records), "--out", str(out)])
        print(f"re-import: {seconds:5.2f} s  {text.splitlines()[-1]}")
        seconds, text = timed(["report", str(out), "--by", "record", "--format", "csv"])
        print(f"report --by record: {seconds:5.2f} s  ({len(text.splitlines()) - 1} records)")
        seconds, _ = timed(["report", str(out), "--format", "csv"])
        print(f"report (configs):   {seconds:5.2f} s")


if __name__ == "__main__":
    main()
