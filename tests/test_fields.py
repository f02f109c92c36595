"""The field roles table (core/fields.py) is the one place that says which config fields make
a config, and the report, resume, the weights check, the step search and the spec all follow
it."""

from __future__ import annotations

import ast
import dataclasses
import json
from pathlib import Path

import pyarrow as pa
import pytest

from ablate.core import fields
from ablate.core.fields import IDENTITY, LABEL, PLACEMENT, REPLICATE, ROLES, role

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("core", "model", "trainer", "sweeps", "results", "analysis", "cli")
NOT_IDENTITY = {name for name, r in ROLES.items() if r != IDENTITY}


def literals_of_field_names(tree: ast.AST):
    """Collection literals (set, tuple, list; a dict's keys where its values are constants)
    made only of config field names, at least three of them not identity: a list saying which
    fields are what. (A dict that builds a config from values, or a (sweep, trial_id) key, is
    not one.)"""
    for node in ast.walk(tree):
        if isinstance(node, (ast.Set, ast.Tuple, ast.List)):
            items = node.elts
        elif isinstance(node, ast.Dict) and all(isinstance(v, ast.Constant) for v in node.values):
            items = [k for k in node.keys if k is not None]
        else:
            continue
        names = [i.value for i in items if isinstance(i, ast.Constant) and isinstance(i.value, str)]
        if len(names) == len(items) and set(names) <= set(ROLES) and len(set(names) & NOT_IDENTITY) >= 3:
            yield node.lineno, names


def test_no_module_but_core_fields_lists_which_fields_are_what():
    found = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            if path == ROOT / "core" / "fields.py":
                continue
            for line, names in literals_of_field_names(ast.parse(path.read_text(), str(path))):
                found.append(f"{path.relative_to(ROOT)}:{line}: {names}")
    assert not found, "classify fields through ablate.core.fields:\n" + "\n".join(found)


def test_the_scan_finds_a_list_of_field_names():
    """The scan above is not vacuous: the lists it replaced are caught."""
    old = ('PLACEMENT = frozenset({"out", "data", "sweep", "trial_id", "workers"})\n'
           'ROLE = {"seed": "replicate", "out": "placement", "data": "placement"}\n'
           'key = ("sweep", "trial_id")\n'
           'cfg = {"out": out, "data": data, "sweep": name, "lr_head": 0.1}\n')
    assert sorted(line for line, _ in literals_of_field_names(ast.parse(old))) == [1, 2]


def test_every_field_a_trial_carries_has_a_role():
    from ablate.model.config import GPTConfig
    from ablate.trainer.config import TrainConfig

    carried = set(TrainConfig().to_flat()) | {"batch_size"}
    assert carried <= set(ROLES), sorted(carried - set(ROLES))
    assert {f.name for f in dataclasses.fields(GPTConfig)} <= set(ROLES)
    assert role("a_field_added_later") == IDENTITY  # unforeseen: tells configs apart
    assert role("seed") == REPLICATE and role("trial_id") == LABEL and role("out") == PLACEMENT
    assert role("workers") == IDENTITY  # docs/sweeps.md, Field roles
    assert fields.REPLICATES == ("seed",)
    assert fields.OUTSIDE_RUN == fields.LABELS | fields.PLACEMENTS
    assert fields.OUTSIDE_CONFIG == fields.OUTSIDE_RUN | {"seed"}
    assert fields.coordinates(["k", "lambda_init"]) == ["k", "lambda_init", "seed"]


def test_the_sweep_sets_every_reserved_field_and_a_spec_may_not(tmp_path):
    from ablate.sweeps.spec import SpecError, parse_spec

    for name in fields.SET_BY_SWEEP:
        assert name in ROLES
        with pytest.raises(SpecError, match=f"fixed.{name}: is set by the sweep itself"):
            parse_spec({"sweep": {"name": "s"}, "fixed": {name: 1}})
    parse_spec({"sweep": {"name": "s"}, "fixed": {"checkpoint_every": 25, "val_every": 25}})


def params(**over) -> dict:
    base = {"preset": "tiny", "lr_head": 0.008, "num_iterations": 20, "workers": 1, "seed": 0,
            "sweep": "a", "trial_id": "t", "out": "/x.parquet", "data": "/d",
            "checkpoint_every": 0, "save_weights": None}
    return base | over


def test_the_report_groups_trials_by_their_identity_fields():
    from ablate.results.configs import group_configs

    trials = [params(), params(seed=1, sweep="b", trial_id="u", out="/y", data="/e",
                               checkpoint_every=10, save_weights=True),
              params(workers=2), params(lr_head=0.01)]
    configs = group_configs(pa.table({"params": [json.dumps(p) for p in trials]}))
    index = configs.index.tolist()
    assert index[0] == index[1]  # replicate, labels, placement: one config
    assert len({index[0], index[2], index[3]}) == 3  # workers and lr_head: others
    assert set(configs.fields) == {"workers", "lr_head"}


def test_a_weights_file_matches_its_curve_across_placement_only():
    from ablate.trainer.weights import config_differences

    assert config_differences(params(), params(out="/z", data="/f", checkpoint_every=5,
                                               save_weights=True)) == []
    assert config_differences(params(), params(trial_id="v", seed=3, workers=2)) == [
        "seed", "trial_id", "workers"]


def test_a_search_question_is_the_identity_but_the_step_count():
    from ablate.sweeps.search.study import question, question_differences

    asked = question(params())
    assert set(asked) == {"preset", "lr_head", "workers"}
    assert question_differences(asked, question(params(num_iterations=40, seed=5, out="/q"))) == []
    assert question_differences(asked, question(params(lr_head=0.1))) == ["lr_head"]
    # a study begun when workers was not asked about, and placement was: still this search's
    legacy = {"preset": "tiny", "lr_head": 0.008, "checkpoint_every": 0}
    assert question_differences(legacy, question(params(workers=4))) == []


def test_resume_continues_across_labels_and_placement_and_refuses_another_identity(tmp_path, data_dir):
    """A real checkpoint, its saved config changed field by field as another run's would be."""
    import torch

    from ablate.core.states import COMPLETED
    from ablate.trainer.cli import LogReporter
    from ablate.trainer.config import TrainConfig
    from ablate.trainer.train import CHECKPOINT_FILE, load_checkpoint, train

    def cfg(out: Path):
        return TrainConfig.recipe("tiny", data=str(data_dir), num_iterations=8, val_every=4,
                                  checkpoint_every=4, tokens_per_step=256, val_tokens=1024, out=str(out))

    train(cfg(tmp_path / "a.parquet"), LogReporter(tmp_path / "ck", 0))
    state = load_checkpoint(tmp_path / "ck" / "latest")
    saved = json.loads(state["config"])

    def resumed_with(**changed):
        folder = tmp_path / "-".join(changed)
        folder.mkdir()
        torch.save(state | {"config": json.dumps(saved | changed)}, folder / CHECKPOINT_FILE)
        return train(cfg(folder / "c.parquet"), None, resume=folder)

    moved = dict(sweep="x", trial_id="y", out="/elsewhere.parquet", data="/d", checkpoint_every=0,
                 save_weights=True)
    assert {role(k) for k in moved} == {LABEL, PLACEMENT}
    assert resumed_with(**moved).status == COMPLETED
    for name, value in (("lr_head", 0.5), ("seed", 7), ("workers", 2)):
        with pytest.raises(ValueError, match=rf"resume: the checkpoint is of another config \({name} "):
            resumed_with(**{name: value})
