"""A curve's end, computed in one place (results.curves.final_point / final_loss, and
core.states.outcome): the report, `ablate status`, the step search and `ablate inspect` read a
curve's final point and its final loss the same way."""

from __future__ import annotations

import ast
import json
import math
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from ablate.core import states
from ablate.results.curves import ended, final_loss, final_point, write_curve


def rows(statuses, losses, budget=8, steps=None):
    steps = steps or [4 * i for i in range(len(statuses))]
    params = json.dumps({"seed": 0, "num_iterations": budget})
    return [dict(sweep="s", trial_id="t", seed=0, num_iterations=budget, step=step,
                 train_time_ms=10.0 * step, val_loss=loss, status=status, params=params)
            for step, loss, status in zip(steps, losses, statuses)]


def test_the_final_point_is_the_row_at_the_highest_step_whatever_the_row_order():
    table = pa.Table.from_pylist(rows(["completed", "running", "running"], [3.0, 5.0, 4.0],
                                      steps=[8, 0, 4]))
    assert final_point(table)["step"] == 8 and final_point(table)["status"] == states.COMPLETED
    assert final_point(table.slice(0, 0)) is None


@pytest.mark.parametrize("status, loss, step, expected", [
    (states.COMPLETED, 3.1, 8, 3.1),
    (states.COMPLETED, math.nan, 8, math.inf),  # completed yet non-finite: it diverged
    (states.DIVERGED, math.nan, 4, math.inf),
    (states.COMPLETED, 3.1, 4, None),  # not at its budget: not this budget's final loss
    (states.RUNNING, 3.1, 4, None),
    (states.FAILED, 3.1, 4, None),
])
def test_a_final_loss_only_for_a_run_that_finished(status, loss, step, expected):
    point = {"status": status, "val_loss": loss, "step": step, "num_iterations": 8}
    assert final_loss(point) == expected
    assert ended(point) == (status in (states.COMPLETED, states.DIVERGED))


def test_the_report_outcome_agrees_with_the_final_loss():
    from ablate.results.trials import outcome_of

    statuses = [states.COMPLETED, states.COMPLETED, states.DIVERGED, states.FAILED, None, "odd"]
    losses = np.array([3.0, np.nan, np.nan, 3.0, 3.0, 3.0])
    assert outcome_of(statuses, losses).tolist() == [
        "completed", "diverged", "diverged", "failed", "running", "running"]
    for status, loss, outcome in zip(statuses, losses, outcome_of(statuses, losses)):
        point = {"status": status, "val_loss": loss, "step": 8, "num_iterations": 8}
        assert (final_loss(point) == math.inf) == (outcome == states.DIVERGED)


def test_status_and_the_search_read_the_same_final_point(tmp_path):
    """A curve whose rows are out of step order: `ablate status`, the search's probe loss and
    the report all take its highest step."""
    from ablate.results.report import build_report
    from ablate.sweeps.search.study import curve_loss
    from ablate.sweeps.status import sweep_status

    folder = tmp_path / "s"
    write_curve(folder / "curves" / "t.parquet",
                rows(["completed", "running", "running"], [3.25, 5.0, 4.0], steps=[8, 0, 4]))
    [row] = sweep_status(str(folder), [])
    assert (row["step"], row["val_loss"], row["state"]) == (8, 3.25, states.COMPLETED)
    assert curve_loss(folder / "curves" / "t.parquet") == 3.25
    [config] = build_report([folder]).configs
    assert config.loss["mean"] == 3.25 and config.counts[states.COMPLETED] == 1


def state_words_spelled(tree: ast.AST):
    """State words written as string literals where code compares, assigns or returns them."""
    words = set(states.STATES)

    def spelled(node) -> bool:
        return isinstance(node, ast.Constant) and node.value in words

    for node in ast.walk(tree):
        if isinstance(node, ast.Compare):
            candidates = [node.left, *node.comparators]
        elif isinstance(node, (ast.Set, ast.Tuple, ast.List)):
            candidates = node.elts
        elif isinstance(node, ast.IfExp):
            candidates = [node.body, node.orelse]
        elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.Return)):
            candidates = [node.value]
        elif isinstance(node, ast.keyword) and node.arg in ("status", "state"):
            candidates = [node.value]
        elif isinstance(node, ast.Dict):
            candidates = [v for k, v in zip(node.keys, node.values)
                          if isinstance(k, ast.Constant) and k.value in ("status", "state")]
        else:
            continue
        for candidate in candidates:
            if spelled(candidate):
                yield candidate.lineno, candidate.value


def test_no_module_but_core_states_spells_a_state_word():
    root = Path(__file__).resolve().parent.parent
    found = []
    for package in ("core", "model", "trainer", "sweeps", "results", "analysis", "cli"):
        for path in sorted((root / package).rglob("*.py")):
            if path == root / "core" / "states.py":
                continue
            for line, word in state_words_spelled(ast.parse(path.read_text(), str(path))):
                found.append(f"{path.relative_to(root)}:{line}: {word!r}")
    assert not found, "use ablate.core.states:\n" + "\n".join(found)
    caught = ("x = 'completed' if a else 'running'\nif s == 'diverged': pass\nemit(out, 'stopped')\n"
              "row = {'status': 'failed', 'event': 'stopped'}")
    assert sorted(line for line, _ in state_words_spelled(ast.parse(caught))) == [1, 1, 2, 4]
