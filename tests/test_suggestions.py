"""A mistyped command, option, spec section, spec key, model or trainer field, or report
field gets the nearest right one in its one-line refusal."""

import pytest

from ablate.cli import main


@pytest.mark.parametrize("argv, said", [
    (["sweeep", "x.toml"], "invalid choice: 'sweeep' (choose from 'sweep', "),
    (["report", "--bi", "x"], "unrecognized arguments: --bi (did you mean '--by'?)"),
    (["report", "x", "--plto", "d"], "unrecognized arguments: --plto d (did you mean '--plot'?)"),
])
def test_a_mistyped_command_or_option_names_the_nearest(argv, said, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and said in err
    if argv[0] == "sweeep":
        assert err.endswith("(did you mean 'sweep'?)")


@pytest.mark.parametrize("body, said", [
    ('[sweeps]\nname = "x"\n', "sweeps: unknown section (expected axes, early_stopping, fixed, "),
    ('[sweep]\nname = "x"\nseds = 2\n', "sweep.seds: unknown key (expected one of name, "),
    ('[sweep]\nname = "x"\n[fixed]\nnum_iteration = 5\n', "fixed.num_iteration: unknown field"),
    ('[sweep]\nname = "x"\n[axes]\nextra_embedings = [0, 1]\n', "extra_embedings: unknown field"),
])
def test_a_mistyped_spec_key_names_the_nearest(body, said, tmp_path, capsys):
    spec = tmp_path / "s.toml"
    spec.write_text(body)
    assert main(["sweep", str(spec), "--dry-run"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and said in err
    nearest = {"sweeps": "sweep", "seds": "seeds", "num_iteration": "num_iterations",
               "extra_embedings": "extra_embeddings"}
    word = next(w for w in nearest if w in err)
    assert f"(did you mean {nearest[word]!r}?)" in err


def test_a_word_near_nothing_gets_no_suggestion(tmp_path, capsys):
    spec = tmp_path / "s.toml"
    spec.write_text('[sweep]\nname = "x"\nzzzzqqq = 1\n')
    assert main(["sweep", str(spec), "--dry-run"]) == 2
    assert "did you mean" not in capsys.readouterr().err
