"""The step-search spec: good specs load; bad ones are refused with the field named."""

import pytest

from ablate.sweeps.search.spec import load_search_spec
from ablate.sweeps.spec import SpecError

GOOD = """
[sweep]
name = "k1"
[resources]
workers = 2
[fixed]
extra_embeddings = 1
batch_size = 4
[search]
min_steps = 8
max_steps = 16
granularity = 4
target = 3.9
"""


def load(tmp_path, text):
    path = tmp_path / "search.toml"
    path.write_text(text)
    return load_search_spec(path)


def test_a_good_spec_loads_with_defaults(tmp_path):
    spec = load(tmp_path, GOOD)
    s = spec.search
    assert (s.min_steps, s.max_steps, s.granularity, s.target) == (8, 16, 4, 3.9)
    assert (s.alpha, s.seeds_per_probe, s.max_seeds) == (0.05, 3, 8)
    assert s.grid == [8, 12, 16]
    assert spec.probe(12, 1) == {"preset": "tiny", "extra_embeddings": 1, "batch_size": 4,
                                 "num_iterations": 12, "seed": 1}


def with_search(**fields):
    """GOOD with [search] keys replaced (None removes one)."""
    base = {"min_steps": "8", "max_steps": "16", "granularity": "4", "target": "3.9"}
    base.update({k: v for k, v in fields.items()})
    body = "\n".join(f"{k} = {v}" for k, v in base.items() if v is not None)
    return GOOD.split("[search]")[0] + "[search]\n" + body + "\n"


@pytest.mark.parametrize("text, message", [
    (GOOD.split("[search]")[0], "search: missing"),
    (with_search(bogus="1"), "search.bogus: unknown key"),
    (with_search(min_steps='"8"'), "search.min_steps: must be int"),
    (with_search(max_trials="true"), "search.max_trials: must be int"),
    (with_search(granularity="4.0"), "search.granularity: must be int"),
    (with_search(target='"low"'), "search.target: must be int or float"),
    (with_search(target=None), "search.target: missing"),
    (with_search(min_steps=None), "search.min_steps: missing"),
    (with_search(min_steps="0"), "search.min_steps: must be >= 1"),
    (with_search(max_steps="8"), "search.max_steps: must be greater than min_steps"),
    (with_search(max_steps="4"), "search.max_steps: must be greater than min_steps"),
    (with_search(granularity="3"), "search.granularity: 3 does not divide the step range 8..16"),
    (with_search(granularity="0"), "search.granularity: must be >= 1"),
    (with_search(target="nan"), "search.target: must be finite"),
    (with_search(alpha="0"), "search.alpha: must be in (0, 0.5]"),
    (with_search(alpha="0.7"), "search.alpha: must be in (0, 0.5]"),
    (with_search(seeds_per_probe="1"), "search.seeds_per_probe: must be >= 2"),
    (with_search(max_seeds="2"), "search.max_seeds: must be >= seeds_per_probe (3)"),
    (with_search(max_trials="2"), "search.max_trials: must be >= seeds_per_probe (3)"),
    (GOOD.replace('name = "k1"', 'name = "k1"\nseeds = 3'), "sweep.seeds: is chosen by the search"),
    (GOOD.replace('name = "k1"', 'name = "k1"\ntarget = 3.0'), "sweep.target: is chosen by the search"),
    (GOOD.replace("extra_embeddings = 1", "num_iterations = 10"),
     "fixed.num_iterations: is chosen by the search"),
    (GOOD + "[axes]\nlambda_init = ['zero', 'one']\n", "axes: unknown section"),
    (GOOD.replace("extra_embeddings = 1", "warp_drive = 1"), "fixed.warp_drive: unknown field"),
    (GOOD.replace("extra_embeddings = 1", "extra_embeddings = 9"), "fixed.extra_embeddings"),
    (GOOD.replace("batch_size = 4", "batch_size = 3"), "fixed.batch_size: 3 sequences do not split"),
    (GOOD.replace("[search]", "[search]\n[search.more]"), "search.more: unknown key"),
    ("[search\n", "not valid TOML"),
])
def test_bad_specs_name_the_field(tmp_path, text, message):
    with pytest.raises(SpecError) as e:
        load(tmp_path, text)
    assert message in str(e.value)
    assert str(tmp_path / "search.toml") in str(e.value)
    assert len(str(e.value).splitlines()) == 1


def test_missing_spec_file(tmp_path):
    with pytest.raises(SpecError, match="no such spec file"):
        load_search_spec(tmp_path / "nope.toml")


def test_optuna_storage_refuses_a_database_of_something_else(tmp_path):
    import sqlite3

    from ablate.sweeps.search.spec import parse_search_spec
    from ablate.sweeps.search.study import open_study

    db = tmp_path / "mine.db"
    with sqlite3.connect(db) as con:
        con.execute("create table invoices (id integer)")
    spec = parse_search_spec({"sweep": {"name": "s"}, "search": {
        "min_steps": 10, "max_steps": 20, "granularity": 10, "target": 3.0}})
    with pytest.raises(SpecError, match="holds other tables \\(invoices\\)"):
        open_study(f"sqlite:///{db}", spec)
    with sqlite3.connect(db) as con:
        assert [r[0] for r in con.execute("select name from sqlite_master")] == ["invoices"]
    assert open_study(f"sqlite:///{tmp_path / 'new.db'}", spec).study_name == "search-steps:s"
