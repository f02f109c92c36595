"""Benchmark: the step search against a grid, on a noisy oracle instead of training.

The oracle's final loss is a + b * steps^-c + seed noise (sigma * N(0, 1), fixed by draw, step
count and seed, like a seeded run), with a known true answer: the smallest grid step count
whose expected loss is below the target. Each draw picks where the curve crosses the target
and its shape and noise, around the medium track (2.92 at ~5700 steps, a seed std of
1-2 thousandths). The search runs through the same code as `ablate search-steps` (StepSearch
asked and told, an in-memory Optuna study as its memory); the grid runs every step count with
the seeds the same t-test rule needs; the noiseless bisection count is what a bisection needs
without noise (one run per probe).

    .venv/bin/python bench/step_search.py              # 20 draws
    .venv/bin/python bench/step_search.py --draws 100
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass

import numpy as np
import optuna
from rich.console import Console
from rich.table import Table

from ablate.sweeps.search.method import MORE, PASS, StepSearch, decide
from ablate.sweeps.search.spec import SearchSettings

MEDIUM = SearchSettings(min_steps=3000, max_steps=8000, granularity=125, target=2.92,
                        alpha=0.05, seeds_per_probe=3, max_seeds=8, max_trials=10_000)


@dataclass(frozen=True)
class Oracle:
    """final loss = a + b * steps^-c + sigma * N(0, 1), the noise fixed by (draw, steps, seed)."""

    a: float
    b: float
    c: float
    sigma: float
    draw: int

    def mean(self, steps: int) -> float:
        return self.a + self.b * steps ** -self.c

    def loss(self, steps: int, seed: int) -> float:
        noise = np.random.default_rng([self.draw, steps, seed]).standard_normal()
        return self.mean(steps) + self.sigma * float(noise)

    def truth(self, s: SearchSettings) -> int | None:
        return next((st for st in s.grid if self.mean(st) < s.target), None)


def draw_oracle(draw: int, s: SearchSettings = MEDIUM) -> Oracle:
    """A curve that crosses the target somewhere in the step range."""
    rng = np.random.default_rng([2026, draw])
    cross = rng.uniform(s.min_steps, s.max_steps)  # expected loss = target here
    c = rng.uniform(0.3, 0.7)
    gap = rng.uniform(0.2, 0.4)  # how far above its asymptote the loss still is at `cross`
    sigma = rng.uniform(0.001, 0.002)
    return Oracle(a=s.target - gap, b=gap * cross ** c, c=c, sigma=sigma, draw=draw)


@dataclass(frozen=True)
class Outcome:
    answer: int | None
    trials: int  # runs, i.e. seeds summed over step counts
    probes: int  # step counts run
    max_seeds: int  # most seeds at one step count


def run_search(oracle: Oracle, s: SearchSettings = MEDIUM) -> Outcome:
    """The search, as `ablate search-steps` runs it, with the oracle in place of training."""
    search = StepSearch(s, optuna.create_study(direction="minimize"))
    while not search.finished:
        probes = list(iter(search.ask, None))  # what Tune would run at once
        assert probes, "the search waits on nothing"
        for p in probes:
            search.tell(p.number, oracle.loss(p.steps, p.seed))
    seeds = [v.n for v in search.verdicts()]
    return Outcome(search.answer, sum(seeds), len(seeds), max(seeds))


def run_grid(oracle: Oracle, s: SearchSettings = MEDIUM) -> Outcome:
    """Every step count, each with the seeds the same test needs to decide it."""
    answer, seeds = None, []
    for steps in s.grid:
        losses = [oracle.loss(steps, seed) for seed in range(s.seeds_per_probe)]
        while (v := decide(steps, losses, s)).decision == MORE:
            losses.append(oracle.loss(steps, len(losses)))
        seeds.append(v.n)
        if answer is None and v.decision == PASS:
            answer = steps
    return Outcome(answer, sum(seeds), len(seeds), max(seeds))


def noiseless_bisection(s: SearchSettings = MEDIUM) -> int:
    """Probes a bisection needs without noise: log2 of the number of possible answers."""
    return math.ceil(math.log2(len(s.grid) + 1))


def right(answer: int | None, truth: int | None, s: SearchSettings) -> bool:
    """Within one granularity step of the true answer."""
    if answer is None or truth is None:
        return answer == truth
    return abs(answer - truth) <= s.granularity


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=(__doc__ or "").partition("\n")[0])
    p.add_argument("--draws", type=int, default=20)
    args = p.parse_args(argv)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    s = MEDIUM
    table = Table(title=f"step search vs grid: steps {s.min_steps}..{s.max_steps} by "
                        f"{s.granularity}, target {s.target}, alpha {s.alpha}, "
                        f"seeds {s.seeds_per_probe}..{s.max_seeds}")
    for col in ("draw", "truth", "search", "ok", "trials", "probes", "seeds max", "grid",
                "ok ", "grid trials"):
        table.add_column(col, justify="right")
    totals = dict(search_ok=0, exact=0, grid_ok=0, search_trials=0, grid_trials=0, probes=0)
    for draw in range(args.draws):
        oracle = draw_oracle(draw, s)
        truth, found, grid = oracle.truth(s), run_search(oracle, s), run_grid(oracle, s)
        ok, grid_ok = right(found.answer, truth, s), right(grid.answer, truth, s)
        totals["search_ok"] += ok
        totals["exact"] += found.answer == truth
        totals["grid_ok"] += grid_ok
        totals["search_trials"] += found.trials
        totals["grid_trials"] += grid.trials
        totals["probes"] += found.probes
        table.add_row(str(draw), str(truth), str(found.answer), "yes" if ok else "[red]no[/]",
                      str(found.trials), str(found.probes), str(found.max_seeds),
                      str(grid.answer), "yes" if grid_ok else "[red]no[/]", str(grid.trials))
    console = Console()
    console.print(table)
    n = args.draws
    console.print(
        f"search: right {totals['search_ok']}/{n} (exactly {totals['exact']}), "
        f"{totals['search_trials'] / n:.1f} trials and "
        f"{totals['probes'] / n:.1f} step counts per draw | grid: right {totals['grid_ok']}/{n}, "
        f"{totals['grid_trials'] / n:.1f} trials ({len(s.grid)} step counts) | search/grid "
        f"trials {totals['search_trials'] / totals['grid_trials']:.2f} | noiseless bisection: "
        f"{noiseless_bisection(s)} step counts")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
