"""Item 12 of the reliability table (its second half): a step search refuses a bad Optuna
URL before it writes the built-in corpus."""

import pytest

from ablate.sweeps.spec import SpecError


def test_item12_a_bad_optuna_url_is_refused_before_the_corpus_is_written(tmp_path):
    from test_search_run import search_steps, write_spec

    spec = write_spec(tmp_path, "builtin")
    with pytest.raises(SpecError, match="^--optuna-storage: cannot open not a url"):
        search_steps(spec, "--storage", tmp_path / "runs", "--optuna-storage", "not a url")
    assert not (tmp_path / "runs").exists()
