"""[search] method = "random": num_samples grid points drawn without repeats from a seed when
the spec is read (a dry run lists them), each run with every seed. That a Ctrl-C and `ablate
resume` run exactly the drawn points, none twice, is tested on a real sweep in
tests/test_interrupt.py."""

from __future__ import annotations

import re

import pytest

from ablate.sweeps.spec import SpecError, parse_spec, spec_dict

AXES = {"lr_head": [0.008, 0.006, 0.004, 0.002], "extra_embeddings": [0, 1, 2]}


def raw(**search):
    return {"sweep": {"name": "r", "seeds": 2}, "fixed": {"num_iterations": 8}, "axes": AXES,
            "search": search}


def test_random_points_are_distinct_grid_points_drawn_from_the_seed():
    spec = parse_spec(raw(method="random", num_samples=5, seed=3))
    points = spec.points()
    assert len(points) == 5 and len({tuple(p.values()) for p in points}) == 5
    assert all(p["lr_head"] in AXES["lr_head"] and p["extra_embeddings"] in AXES["extra_embeddings"]
               for p in points)
    assert spec.size == 10 and [t["seed"] for t in spec.trials()] == [0, 1] * 5
    assert parse_spec(raw(method="random", num_samples=5, seed=3)).points() == points  # the same draw
    assert parse_spec(raw(method="random", num_samples=5, seed=4)).points() != points
    assert parse_spec(spec_dict(spec)).points() == points  # what resume reads back
    every = parse_spec(raw(method="random", num_samples=12)).points()
    assert sorted(tuple(p.values()) for p in every) == sorted(
        tuple(p.values()) for p in parse_spec(raw()).points())  # the whole grid, reordered
    assert parse_spec(raw()).size == 24


@pytest.mark.parametrize("search, said", [
    ({"method": "random"}, "search.num_samples: missing"),
    ({"method": "random", "num_samples": 13}, "search.num_samples: must be in 1..12"),
    ({"method": "random", "num_samples": 0}, "search.num_samples: must be in 1..12"),
    ({"num_samples": 3}, "search.num_samples: is for method = 'random'"),
    ({"method": "bayes"}, "search.method: must be 'grid', 'random' or 'tpe', got 'bayes'"),
    ({"method": "random", "num_samples": 2, "seed": -1}, "search.seed: must be in 0..2^63-1"),
    ({"method": "random", "num_samples": 2, "samples": 2}, "search.samples: unknown key"),
])
def test_bad_search_sections_are_refused_naming_the_field(search, said):
    with pytest.raises(SpecError, match="^" + re.escape(f"<spec>: {said}")):
        parse_spec(raw(**search))
