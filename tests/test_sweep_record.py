"""sweep.json records each fact of a sweep once: the spec as it ran and the prefix of its trial
ids. The trial settings are derived from them and the folder, for a folder in the old layout
(with a `settings` copy beside the spec) too, the copy ignored."""

from __future__ import annotations

import json

from ablate.sweeps.spec import parse_spec
from ablate.sweeps.storage import load_sweep, save_sweep, spec_settings

SPEC = {"sweep": {"name": "s", "seeds": 2, "target": 3.0, "max_failures": 2},
        "resources": {"workers": 2}, "fixed": {"num_iterations": 8},
        "axes": {"lr_head": [0.008, 0.01]}}


def test_sweep_json_holds_the_spec_as_it_ran_and_the_prefix_and_nothing_twice(tmp_path):
    data = tmp_path / "shards"
    spec = parse_spec({**SPEC, "sweep": {**SPEC["sweep"], "data": "shards"}})
    save_sweep(spec, {"storage": str(tmp_path), "data": str(data), "trial_prefix": "abcde",
                      "resources": {"workers": 64}})
    saved = json.loads((tmp_path / "s" / "sweep.json").read_text())
    assert set(saved) == {"spec", "trial_prefix"} and saved["trial_prefix"] == "abcde"
    assert saved["spec"]["sweep"]["data"] == str(data)  # resolved where the sweep ran

    moved = tmp_path / "moved" / "s2"
    moved.parent.mkdir()
    (tmp_path / "s").rename(moved)
    loaded, settings = load_sweep(str(moved))
    assert settings == dict(storage=str(moved.parent), sweep="s2", data=str(data), builtin=False,
                            trial_prefix="abcde") | spec_settings(loaded)
    assert settings["resources"]["workers"] == 2 and settings["max_failures"] == 2
    assert settings["axes"] == ["lr_head"] and settings["target"] == 3.0


def test_an_old_sweep_json_is_read_its_settings_copy_ignored_but_the_prefix(tmp_path):
    folder = tmp_path / "s"
    folder.mkdir()
    spec = parse_spec(SPEC)
    old = {"spec": {**SPEC, "resources": {"workers": 2}},
           "settings": {"storage": "/elsewhere", "sweep": "other", "data": "/nowhere",
                        "builtin": True, "trial_prefix": "0f1e2", "max_failures": 50,
                        "resources": {"workers": 64, "cpus_per_worker": 64}}}
    (folder / "sweep.json").write_text(json.dumps(old))
    loaded, settings = load_sweep(str(folder))
    assert loaded == parse_spec(old["spec"], source=str(folder / "sweep.json"))
    assert settings["trial_prefix"] == "0f1e2"
    assert settings["storage"] == str(tmp_path) and settings["sweep"] == "s"
    assert settings["data"] == str(tmp_path / ".data" / "builtin")  # the spec's builtin corpus
    assert settings["resources"] == spec_settings(spec)["resources"]
    assert settings["max_failures"] == spec.max_failures == 2


def test_a_sweep_json_without_a_prefix_leaves_it_to_the_curves(tmp_path):
    folder = tmp_path / "s"
    folder.mkdir()
    (folder / "sweep.json").write_text(json.dumps({"spec": SPEC}))
    _, settings = load_sweep(str(folder))
    assert "trial_prefix" not in settings
