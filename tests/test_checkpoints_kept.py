"""Item 12 of the reliability table: a trial keeps two Train checkpoints at most (the best by
val loss, and the latest, which a restart resumes), not one per validation point; and a step
search refuses a bad Optuna URL before it writes the built-in corpus."""

import pytest

from ablate.sweeps.cli import main
from ablate.sweeps.spec import SpecError

SPEC = """
[sweep]
name = "kept"
data = "{data}"

[resources]
workers = 1

[fixed]
num_iterations = 24
val_every = 4
checkpoint_every = 4
batch_size = 2
val_tokens = 1024
"""


def test_item12_a_trial_keeps_the_best_and_the_latest_checkpoint_only(tmp_path, data_dir, local_ray):
    spec = tmp_path / "kept.toml"
    spec.write_text(SPEC.format(data=data_dir))
    assert main(["sweep", str(spec), "--storage", str(tmp_path / "runs"), "--json-log"]) == 0
    runs = list((tmp_path / "runs" / "kept" / "train").glob("*/checkpoint_*"))
    assert 1 <= len(runs) <= 2, runs  # 5 reported (steps 4..20); without a limit all 5 stay


def test_item12_a_bad_optuna_url_is_refused_before_the_corpus_is_written(tmp_path):
    from test_search_run import search_steps, write_spec

    spec = write_spec(tmp_path, "builtin")
    with pytest.raises(SpecError, match="^--optuna-storage: cannot open not a url"):
        search_steps(spec, "--storage", tmp_path / "runs", "--optuna-storage", "not a url")
    assert not (tmp_path / "runs").exists()
