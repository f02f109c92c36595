"""The live views and the status table, fed with fake trials: no Ray needed."""

import io
import json
import re
from types import SimpleNamespace

from rich.console import Console

from ablate.core import states
from ablate.sweeps.progress import JsonLog, LineLog, RichView
from ablate.sweeps.status import print_status

AXES = ["extra_embeddings", "lambda_init", "token_lambdas"]


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def trial(i, budget=12000, status="RUNNING", last=None):
    return SimpleNamespace(trial_id=f"8c1f0_{i:05d}", status=status, last_result=last or {},
                           config={"num_iterations": budget, "extra_embeddings": i % 6,
                                   "lambda_init": "zero", "token_lambdas": True, "seed": i})


def report(step, loss, budget=12000, status="running"):
    return {"step": step, "num_iterations": budget, "val_loss": loss, "train_loss": loss + 0.1,
            "train_time_ms": 1234.5 * step, "tokens_seen": 512 * step, "status": status,
            "node_id": "n1"}


def run_some(view, trials, clock, finished=20, running=10):
    """Trials 0..finished-1 run and complete (20 s start-up, 0.01 s a step); the next
    `running` start and report a few steps; the rest stay pending."""
    for t in trials[:finished]:
        view.on_trial_start(0, trials, t)
        clock.now += 20
        view.on_trial_result(0, trials, t, report(0, 5.0))
        clock.now += 120
        view.on_trial_result(0, trials, t, report(12000, 3.2 + t.config["seed"] / 1000,
                                                  status="completed"))
        t.status, t.last_result = "TERMINATED", report(12000, 3.2, status="completed")
        view.on_trial_complete(0, trials, t)
    for t in trials[finished:finished + running]:
        view.on_trial_start(0, trials, t)
        clock.now += 5
        view.on_trial_result(0, trials, t, report(4000, 3.9))


def terminal(width=80, height=24):
    """A terminal as rich sees one (colours, cursor moves), written to memory."""
    return Console(file=io.StringIO(), width=width, height=height, force_terminal=True, record=True)


def screen(view, console) -> list[str]:
    """What the live view shows on `console`, as plain lines (the same renderable its Live
    draws, printed once: a Live's frames are recorded run together)."""
    console.export_text(clear=True)
    console.print(view)
    return console.export_text(clear=True).splitlines()


def test_the_live_view_at_80_columns_keeps_bar_step_loss_and_seed_on_every_line():
    clock, console = Clock(), terminal()
    trials = [trial(i) for i in range(60)]
    view = RichView(AXES, trials=60, total_steps=60 * 12000, sweep="embeds", clock=clock,
                    console=console)
    run_some(view, trials, clock)
    view.on_trial_start(0, trials, trials[30])  # one still starting: no report yet
    lines = screen(view, console)
    assert len(lines) <= 23 and all(len(line) <= 80 for line in lines)
    assert "20/60 trials done" in lines[0] and "1 starting" in lines[0]
    assert "20 completed" in lines[0] and "10 running" in lines[0] and "29 pending" in lines[0]
    assert re.match(r"[━╸╺]{12} 280000/720000 steps · 0:47:30 · ETA \d+:\d\d:\d\d · best final 3.2000",
                    lines[1])
    trial_lines = [line for line in lines[2:] if "folded" not in line]
    assert len(trial_lines) == 20  # 11 active, then the newest finished that fit
    for line in trial_lines:
        assert re.search(r"[━╸╺]{5,}", line) and re.search(r"\d+/12000", line)
        assert re.search(r"seed=\d+", line) and line.endswith("…")  # the config's tail is cut
        assert re.search(r"\d\.\d{4}|starting", line)  # the val loss, or why there is none
    assert sum("starting" in line for line in trial_lines) == 1
    assert "11 finished trials folded: 11 completed" in lines[-1]
    # the same view on a taller terminal shows every started trial, nothing folded
    tall = screen(view, terminal(height=40))
    assert len(tall) == 2 + 31 and not any("folded" in line for line in tall)


def test_a_terminal_shows_each_trials_bar_at_its_step_and_a_log_file_no_bar():
    def feed(view):  # trial 0 at step 12 of 40, trial 1 completed, trial 2 pending
        trials = [trial(i, budget=40) for i in range(3)]
        view.setup()
        view.on_trial_start(0, trials, trials[0])
        view.on_trial_start(0, trials, trials[1])
        view.on_trial_result(0, trials, trials[0], report(12, 4.25, budget=40))
        trials[1].status, trials[1].last_result = "TERMINATED", report(40, 4.0, budget=40, status="completed")
        view.on_trial_result(0, trials, trials[1], trials[1].last_result)
        view.on_trial_complete(0, trials, trials[1])
        clock.now += 1
        view.on_step_end(0, trials)  # a second on: the terminal's view is drawn again
        view.on_experiment_end(trials)

    clock, console, log = Clock(), terminal(width=100), io.StringIO()
    view = RichView(["extra_embeddings"], trials=3, total_steps=120, sweep="s", clock=clock,
                    console=console)
    feed(view)
    assert "\x1b[" in console.file.getvalue()  # drawn for a terminal: colours, cursor moves
    lines = [line.rstrip() for line in screen(view, console)]
    assert lines[0] == "s 1/3 trials done · 1 running · 1 completed · 1 pending"
    assert re.match(r"━{5}╺━{6} +52/120 steps · 0:00:01 · best final 4.0000", lines[1])
    # 12 of 40 steps: 3/10 of the bar drawn (then the rest, dimmed), on trial 0's row
    bar = re.match(r" *00000 (━*)(╸?)(╺?━*) +12/40 4.2500 running +seed=0 extra_embeddings=0$", lines[2])
    width = len(bar[1] + bar[2] + bar[3])
    assert width >= 12 and abs((len(bar[1]) + len(bar[2]) / 2) / width - 0.3) < 1 / width
    assert re.match(r" *00001 ━+ +40/40 4.0000 completed seed=1 extra_embeddings=1$", lines[3])
    feed(LineLog(["extra_embeddings"], trials=3, total_steps=120, sweep="s", stream=log,
                 every=0, clock=clock))
    text = log.getvalue()  # the same events in a log file: plain lines, not one bar
    assert "trial 8c1f0_00000 step 12/40  val 4.2500" in text and "1 completed · 1 pending" in text
    assert not set(text) & set("━╸╺\x1b\r")


def test_line_log_writes_timestamped_events_and_summaries_with_an_eta():
    clock, out = Clock(), io.StringIO()
    trials = [trial(i, budget=100) for i in range(4)]
    view = LineLog(["extra_embeddings"], trials=4, total_steps=400, sweep="s", stream=out,
                   every=30, clock=clock)
    view.setup()
    a, b = trials[:2]
    view.on_trial_start(0, trials, a)
    clock.now += 20  # start-up
    view.on_step_end(0, trials)  # 20 s: no summary yet
    view.on_trial_result(0, trials, a, report(0, 5.0, budget=100))
    clock.now += 10
    view.on_step_end(0, trials)  # 30 s: a summary, no ETA before a trial has finished
    view.on_trial_result(0, trials, a, report(100, 4.0, budget=100, status="completed"))
    a.status, a.last_result = "TERMINATED", report(100, 4.0, budget=100, status="completed")
    view.on_trial_complete(0, trials, a)
    view.on_trial_start(0, trials, b)
    b.error = "Traceback ...\nRuntimeError: out of memory"
    b.get_error = lambda: b.error
    view.on_trial_error(0, trials, b)
    clock.now += 30
    view.on_step_end(0, trials)
    lines = out.getvalue().splitlines()
    stamp = r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d "
    assert all(re.match(stamp, line) for line in lines)
    text = [re.sub(stamp, "", line) for line in lines]
    assert text[0] == "sweep s: 4 trials, 400 steps"
    assert text[1] == "trial 8c1f0_00000 starting  extra_embeddings=0 seed=0"
    assert text[2] == "trial 8c1f0_00000 step 0/100  val 5.0000  train 5.1000  0.0s"
    assert text[3] == "sweep s: 1 running · 3 pending · latest 5.0000 (extra_embeddings=0 seed=0)"
    assert text[4] == "trial 8c1f0_00000 step 100/100  val 4.0000  train 4.1000  123.5s"
    assert text[5] == "trial 8c1f0_00000 completed  step 100/100  val 4.0000  extra_embeddings=0 seed=0"
    assert text[6] == "trial 8c1f0_00001 starting  extra_embeddings=1 seed=1"
    assert text[7] == "trial 8c1f0_00001 failed  RuntimeError: out of memory"
    # start-up 20 s + 0.1 s a step: two pending trials of 100 steps, one at a time
    assert text[8] == ("sweep s: 1 completed · 1 failed · 2 pending · best final 4.0000 "
                       "(extra_embeddings=0 seed=0) · latest 4.0000 (extra_embeddings=0 seed=0) "
                       "· ETA 0:01:00")


def test_the_eta_counts_start_up_and_the_steps_left_of_every_trial():
    clock = Clock()
    trials = [trial(i, budget=100) for i in range(6)]
    view = JsonLog(["extra_embeddings"], trials=6, total_steps=600, stream=io.StringIO(),
                   clock=clock)
    a, b, c = trials[:3]
    view.on_trial_start(0, trials, a)
    view.on_trial_start(0, trials, b)  # two at once
    clock.now += 25
    view.on_trial_result(0, trials, a, report(0, 5.0, budget=100))
    view.on_trial_result(0, trials, b, report(0, 5.0, budget=100))
    assert view.eta() is None  # nothing finished: no rate yet
    clock.now += 50
    view.on_trial_result(0, trials, b, report(50, 4.5, budget=100))
    view.on_trial_result(0, trials, a, report(100, 4.0, budget=100, status="completed"))
    a.status, a.last_result = "TERMINATED", report(100, 4.0, budget=100, status="completed")
    view.on_trial_complete(0, trials, a)  # 25 s start-up, 0.5 s a step
    view.on_trial_start(0, trials, c)
    clock.now += 5
    # b: 50 steps (25 s); c: 20 s more start-up + 100 steps (70 s); 3 pending: 3 x 75 s;
    # all of it shared by two trials at a time
    assert view.eta() == (25 + 70 + 3 * 75) / 2


def test_json_events_carry_the_trials_training_numbers():
    out, clock = io.StringIO(), Clock()
    trials = [trial(0, budget=100)]
    view = JsonLog(["extra_embeddings"], trials=1, total_steps=100, sweep="s", stream=out,
                   clock=clock)
    view.setup()
    view.on_trial_start(0, trials, trials[0])
    view.on_trial_result(0, trials, trials[0], report(40, 4.5, budget=100))
    view.on_experiment_end(trials)
    start, result, end = (json.loads(line) for line in out.getvalue().splitlines()[1:])
    assert start["state"] == states.STARTING and start["counts"]["starting"] == 1
    assert result["state"] == states.RUNNING and result["counts"]["running"] == 1
    assert {k: result[k] for k in ("step", "val_loss", "train_loss", "train_time_ms",
                                   "tokens_seen", "seed")} == {
        "step": 40, "val_loss": 4.5, "train_loss": 4.6, "train_time_ms": 49380.0,
        "tokens_seen": 20480, "seed": 0}
    assert end["event"] == "sweep_end"
    assert end["latest"] == {"val_loss": 4.5, "label": "extra_embeddings=0 seed=0"}
    assert end["best_final"] is None  # no trial has ended: an intermediate point is no result


def test_the_best_is_a_final_loss_not_a_curves_intermediate_low():
    out, clock = io.StringIO(), Clock()
    trials = [trial(0, budget=100)]
    view = JsonLog(["extra_embeddings"], trials=1, total_steps=100, sweep="s", stream=out,
                   clock=clock)
    a = trials[0]
    view.on_trial_start(0, trials, a)
    view.on_trial_result(0, trials, a, report(80, 4.0, budget=100))
    view.on_trial_result(0, trials, a, report(100, 4.2, budget=100, status="completed"))
    a.status, a.last_result = "TERMINATED", report(100, 4.2, budget=100, status="completed")
    view.on_trial_complete(0, trials, a)
    assert view.best == (4.2, "extra_embeddings=0 seed=0")
    assert "latest 4.2000" in view.summary() and "best final 4.2000" in view.summary()


def test_the_status_table_at_80_columns_holds_every_number_in_full():
    rows = [dict(trial_id=f"8c1f0_{i:05d}", state=state, num_iterations=12345,
                 step=12345 if state != "running" else 6000, val_loss=2.91995612 + i,
                 curve_status="completed" if state == "completed" else "running",
                 config={"extra_embeddings": i, "lambda_init": "zero", "token_lambdas": True,
                         "lr_muon": 0.0512345, "cooldown_frac": 0.123456789, "seed": 1000 + i})
            for i, state in enumerate(states.STATES[1:])]
    console = Console(file=io.StringIO(), width=80, color_system=None)
    print_status(rows, len(rows) + 2, console)
    text = console.file.getvalue()
    assert max(len(line) for line in text.splitlines()) <= 80
    words = set(re.split(r"[\s=]+", text))  # a key may fold; its value stays whole
    for r in rows:
        assert r["trial_id"] in words and r["state"] in words
        assert f"{r['step']}/12345" in words and f"{r['val_loss']:.4f}" in words
        assert {"0.0512345", "0.123456789", str(r["config"]["seed"])} <= words
    assert "1 starting · 1 running" in text and "2 pending" in text
