"""The trial states now live in ablate.core.states (the trainer, the sweep and the report
share them); this name forwards to it for the modules that still import it from here."""

from ablate.core.states import (  # noqa: F401
    ACTIVE,
    COMPLETED,
    CURVE,
    DIVERGED,
    FAILED,
    FINAL_CURVE,
    FINISHED,
    INTERRUPTED,
    LIVE,
    OUTCOMES,
    PENDING,
    RUNNING,
    STARTING,
    STATES,
    STOPPED,
    ended_state,
    outcome,
)
