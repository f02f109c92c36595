"""[search] method = "random": num_samples grid points drawn without repeats from a seed when
the spec is read (a dry run lists them), each run with every seed; Ctrl-C, then `ablate
resume` runs exactly the same trials, none twice."""

from __future__ import annotations

import json
import re
import signal

import pyarrow.parquet as pq
import pytest
from test_interrupt import ablate  # the CLI as a subprocess, output piped

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


SPEC = """
[sweep]
name = "sampled"
data = "{data}"
max_concurrent_trials = 1

[resources]
workers = 1

[fixed]
num_iterations = 32
val_every = 4
checkpoint_every = 4
batch_size = 2
val_tokens = 1024

[axes]
lr_head = [0.008, 0.006, 0.004, 0.002]
extra_embeddings = [0, 1]

[search]
method = "random"
num_samples = 3
seed = 11
"""



def test_a_random_sweep_interrupted_and_resumed_runs_each_drawn_point_once(tmp_path, data_dir,
                                                                         local_ray):
    from ablate.sweeps.spec import load_spec

    spec_file = tmp_path / "spec.toml"
    spec_file.write_text(SPEC.format(data=data_dir))
    drawn = sorted((p["lr_head"], p["extra_embeddings"]) for p in load_spec(spec_file).points())
    first = ablate("sweep", str(spec_file), "--storage", str(tmp_path / "runs"), "--json-log",
                   "--address", local_ray)  # the shared Ray: no Ray start of its own
    for line in first.stdout:
        if json.loads(line)["event"] == "trial_end":
            first.send_signal(signal.SIGINT)
            break
    first.communicate(timeout=300)
    assert first.returncode == 130
    folder = tmp_path / "runs" / "sampled"
    second = ablate("resume", str(folder), "--json-log", "--address", local_ray)
    out, err = second.communicate(timeout=600)
    assert second.returncode == 0, err[-2000:]
    curves = sorted((folder / "curves").glob("*.parquet"))
    assert len(curves) == 3
    ran = []
    for path in curves:
        rows = pq.read_table(path).to_pylist()
        assert [r["step"] for r in rows] == list(range(0, 33, 4)), path.name  # once each
        params = json.loads(rows[-1]["params"])
        ran.append((params["lr_head"], params["extra_embeddings"]))
    assert sorted(ran) == drawn
