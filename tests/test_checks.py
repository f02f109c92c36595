"""Rules declared on dataclass fields: core.checks for raw tables, model.config.check_fields
for built configs. Each refusal is one line naming the field."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import pytest

from ablate.core.checks import check_table, checked
from ablate.model.config import ConfigError, GPTConfig
from ablate.trainer.config import TrainConfig


@dataclass(frozen=True)
class Toy:
    kind: Literal["fast", "slow"]
    count: int = checked(2, range=(1, None))
    rate: float = checked(0.5, above=0, range=(None, 1))
    wait: float | None = checked(None, range=(1, 3600), unit="seconds", why="an hour")


class Refused(Exception):
    pass


def fail(where: str, why: str):
    raise Refused(f"{where}: {why}")


@pytest.mark.parametrize("table, said", [
    ({"kind": "fast", "cuont": 1}, "toy.cuont: unknown key (expected one of kind, count, rate, wait) "
                                   "(did you mean 'count'?)"),
    ({"count": 1}, "toy.kind: must be 'fast' or 'slow', got nothing"),
    ({"kind": "fats"}, "toy.kind: must be 'fast' or 'slow', got 'fats' (did you mean 'fast'?)"),
    ({"kind": "fast", "count": True}, "toy.count: must be int, got bool True"),
    ({"kind": "fast", "count": 1.0}, "toy.count: must be int, got float 1.0"),
    ({"kind": "fast", "count": 0}, "toy.count: must be >= 1, got 0"),
    ({"kind": "fast", "rate": float("nan")}, "toy.rate: must be in (0, 1], got nan"),
    ({"kind": "fast", "rate": "high"}, "toy.rate: must be int or float, got str 'high'"),
    ({"kind": "fast", "wait": float("inf")}, "toy.wait: must be seconds in 1..3600 (an hour), got inf"),
])
def test_a_table_that_breaks_a_field_is_refused_in_one_line(table, said):
    with pytest.raises(Refused) as e:
        check_table(table, Toy, "toy", fail)
    assert str(e.value) == said


def test_a_good_table_comes_back_ready_for_its_dataclass():
    values = check_table({"kind": "slow", "rate": 1, "wait": 60}, Toy, "toy", fail)
    assert values == {"kind": "slow", "rate": 1.0, "wait": 60.0}
    assert all(type(values[k]) is float for k in ("rate", "wait"))  # ints become the floats due
    assert Toy(**values).count == 2


@pytest.mark.parametrize("build, said", [
    (lambda: GPTConfig(extra_embeddings=7), "extra_embeddings: must be an integer in 0..5, got 7"),
    (lambda: GPTConfig(token_lambdas=1), "token_lambdas: must be true or false, got 1"),
    (lambda: GPTConfig(window_full_at=0), "window_full_at: must be a number in (0, 1], got 0"),
    (lambda: TrainConfig(compile="yes"), "compile: must be true or false, got 'yes'"),
    (lambda: TrainConfig(muon_momentum=1.0), "muon_momentum: must be a number in [0, 1), got 1.0"),
    (lambda: TrainConfig(seed=-1), "seed: must be an integer in 0..2^63-1 (torch's seed range), got -1"),
    (lambda: TrainConfig(lr_head=float("inf")), "lr_head: must be finite, got inf"),
])
def test_a_config_built_directly_is_checked_against_its_fields(build, said):
    with pytest.raises(ConfigError) as e:
        build()
    assert str(e.value) == said
