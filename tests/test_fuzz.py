"""Fuzzing the two parsers of untrusted text: the sweep spec and published record logs.
Whatever comes in, the answer is a value or the parser's own one-line error, never a crash."""

from __future__ import annotations

import tomllib

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ablate.results.errors import InputError
from ablate.results.logs import parse_log
from ablate.sweeps.spec import SpecError, parse_spec

KEYS = ["name", "preset", "data", "seeds", "target", "workers", "cpus_per_worker",
        "gpus_per_worker", "extra_embeddings", "num_iterations", "lambda_init", "token_lambdas",
        "token_lambda_init", "val_every", "batch_size", "n_head", "seq_len", "bogus", "seed"]
scalars = st.one_of(st.none(), st.booleans(), st.integers(-10, 10**6), st.floats(allow_nan=True),
                    st.text(max_size=12), st.sampled_from(["zero", "one", "tiny", "medium", "x"]))
values = st.one_of(scalars, st.lists(scalars, max_size=3), st.dictionaries(st.text(max_size=5), scalars, max_size=2))
section = st.dictionaries(st.sampled_from(KEYS), values, max_size=5)
specs = st.dictionaries(st.sampled_from(["sweep", "resources", "fixed", "axes", "search", "x"]),
                        st.one_of(section, scalars), max_size=4)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(specs)
def test_spec_parser_answers_a_spec_or_a_spec_error(raw):
    raw = {k: v for k, v in raw.items() if v is not None}
    if isinstance(raw.get("sweep"), dict):  # get past the first check most of the time
        raw["sweep"].setdefault("name", "fuzz")
    try:
        spec = parse_spec(raw, source="fuzz.toml")
    except SpecError as e:
        message = str(e)
        assert message.startswith("fuzz.toml: ") and "\n" not in message
    else:
        assert spec.trials()


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=300))
def test_spec_text_that_parses_as_toml_never_crashes_the_parser(text):
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError:
        return
    try:
        parse_spec(raw)
    except SpecError:
        pass


line = st.one_of(
    st.text(max_size=60),
    st.builds(lambda s, t, v, ms: f"step:{s}/{t} val_loss:{v} train_time:{ms}ms step_avg:1.00ms",
              st.integers(-5, 10**7), st.integers(-5, 10**7),
              st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=6)),
              st.one_of(st.integers(-5, 10**9), st.text(max_size=4))),
    st.builds(lambda s, t: f"step:{s}/{t} train_time:{s}ms step_avg:2.5ms",
              st.integers(0, 10**5), st.integers(0, 10**5)),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(line, max_size=12))
def test_log_parser_answers_points_or_an_input_error(lines):
    try:
        points = parse_log("\n".join(lines), "fuzz.txt")
    except InputError as e:
        assert str(e).startswith("fuzz.txt") and "\n" not in str(e)
    else:
        assert points and all(b.step > a.step for a, b in zip(points, points[1:]))
        assert len({p.total for p in points}) == 1


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 1000), st.floats(0.5, 12, allow_nan=False),
                          st.integers(0, 10**7)), min_size=1, max_size=20, unique_by=lambda t: t[0]))
def test_valid_logs_parse_back_exactly(points):
    points = sorted(points)
    total = points[-1][0]
    text = "".join(f"step:{s}/{total} val_loss:{v:.6f} train_time:{ms}ms step_avg:{ms / s:.2f}ms\n"
                   for s, v, ms in points)
    parsed = parse_log("nvidia-smi junk\n" + text, "ok.txt")
    assert [(p.step, round(p.val_loss, 6), p.train_time_ms) for p in parsed] == \
        [(s, round(v, 6), float(ms)) for s, v, ms in points]


# --- config identity and --baseline: whatever the params, an answer or a one-line error ---

field_values = st.one_of(st.none(), st.booleans(), st.integers(-3, 3), st.sampled_from(
    [0.0, 0.008, float("nan"), float("inf")]), st.sampled_from(["zero", "one", ""]),
    st.lists(st.integers(0, 2), max_size=2))
params_dicts = st.dictionaries(st.sampled_from(["seed", "sweep", "out", "lr_head", "k",
                                                "lambda_init", "betas"]),
                               field_values, max_size=5)


@settings(max_examples=200, deadline=None)
@given(st.lists(params_dicts, min_size=1, max_size=8))
def test_trials_are_one_config_exactly_when_their_identity_fields_agree(trials):
    import json

    import pyarrow as pa

    from ablate.core.fields import OUTSIDE_CONFIG
    from ablate.results.configs import group_configs

    texts = [json.dumps(p) for p in trials]
    configs = group_configs(pa.table({"params": texts}))
    assert sorted(set(configs.index.tolist())) == list(range(len(configs)))
    for i, a in enumerate(trials):
        for j, b in enumerate(trials):
            same = json.dumps({k: v for k, v in sorted(a.items()) if k not in OUTSIDE_CONFIG}) == \
                json.dumps({k: v for k, v in sorted(b.items()) if k not in OUTSIDE_CONFIG})
            assert (configs.index[i] == configs.index[j]) == same
    assert not set(configs.fields) & OUTSIDE_CONFIG and not set(configs.fixed) & set(configs.fields)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=30), st.lists(params_dicts, min_size=1, max_size=5))
def test_baseline_choice_answers_one_config_or_a_one_line_error(text, trials):
    import json

    import pyarrow as pa

    from ablate.results.compare import BaselineChoice, find_baseline
    from ablate.results.configs import group_configs

    configs = group_configs(pa.table({"params": [json.dumps(p) for p in trials]}))
    try:
        config = find_baseline(configs, BaselineChoice.parse(text))
    except InputError as e:
        assert str(e).startswith("--baseline: ") and "\n" not in str(e)
    else:
        assert 0 <= config < len(configs)
