"""One word for each state of a trial, wherever it shows: the curve's `status` column (the
trainer writes it), the driver's trials.json, the live view, `ablate status`, JSON events and
the report's counts.

    pending    not started yet
    starting   started, its workers not yet reporting (workers and DDP set up, data load)
    running    training: it has reported at least one validation point
    completed  trained every step
    stopped    stopped early by the sweep's early stopping
    diverged   its loss went non-finite; the trainer ended it
    failed     an error ended it (`ablate resume` runs it again)
    interrupted  its sweep was interrupted (Ctrl-C) while it ran (`ablate resume` continues it)

A curve's `status` column uses four of them (CURVE): `running` on every row but the last,
whose word says how the run ended. A trial has no curve rows while it is starting.
"""

from __future__ import annotations

PENDING, STARTING, RUNNING, COMPLETED, STOPPED, DIVERGED, FAILED, INTERRUPTED = (
    "pending", "starting", "running", "completed", "stopped", "diverged", "failed", "interrupted")
STATES = (PENDING, STARTING, RUNNING, COMPLETED, STOPPED, DIVERGED, FAILED, INTERRUPTED)
LIVE = STATES[:-1]  # a live view's words: `interrupted` is said of a folder after the fact
ACTIVE = (STARTING, RUNNING)  # holding resources now
FINISHED = (COMPLETED, STOPPED, DIVERGED, FAILED)  # no more steps will come this session
CURVE = (RUNNING, COMPLETED, DIVERGED, FAILED)  # the words a curve's status column holds
FINAL_CURVE = (COMPLETED, DIVERGED)  # curve statuses of a trial that must never run again
# A trial as the report counts it, in the order its counts show: an unknown or missing curve
# status counts as running (not finished, so not averaged in).
OUTCOMES = (COMPLETED, RUNNING, DIVERGED, FAILED)


def ended_state(curve_status: str | None) -> str:
    """The state of a trial Tune ended normally, from the status of its last report: a run
    whose last report was not its last validation point was stopped early."""
    return curve_status if curve_status in FINAL_CURVE else STOPPED


def outcome(curve_status: str | None, final_loss_finite: bool) -> str:
    """A trial's outcome (one of OUTCOMES) from its curve's final point: a completed run whose
    final loss is not finite diverged."""
    if curve_status == COMPLETED and not final_loss_finite:
        return DIVERGED
    return curve_status if curve_status in OUTCOMES else RUNNING
