"""Report tables at 80 columns: every number whole, no line wider than the terminal."""

from __future__ import annotations

import io
import itertools

from test_results_identity import trial

from ablate.results import build_report, write_report
from ablate.results.render import baseline_rows, budget_rows, config_rows


def test_report_tables_at_80_columns_keep_every_number_whole(tmp_path):
    for k, init, seed in itertools.product([0, 1, 2], ["zero", "one"], [0, 1, 2]):
        trial(tmp_path, f"t{k}{init}{seed}", 3.2 - 0.05 * k + 0.01 * seed + 0.02 * (init == "one"),
              1234.5 + 10 * k + seed, extra_embeddings=k, lambda_init=init, seed=seed,
              lr_head=0.0081234)
    report = build_report([tmp_path], target=3.25, baseline="extra_embeddings=0,lambda_init=zero")
    out = io.StringIO()
    write_report(report, out, "table", width=80)
    text = out.getvalue()
    assert max(len(line) for line in text.splitlines()) <= 80
    labels = {"extra_embeddings", "lambda_init", "config"}
    for headers, rows in (config_rows(report), baseline_rows(report), budget_rows(report)):
        for row in rows:
            for header, cell in zip(headers, row):
                if header not in labels and cell:
                    assert cell in text, (header, cell)
