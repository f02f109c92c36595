"""The role of every field a trial's config can carry, declared once.

A trial's config (the curve's `params`) holds every model and trainer field, plus what names
and places the run. Which of them make the config, and which do not, is asked in several
places: the report groups trials into configs, a resume refuses a checkpoint of another
config, a weights file must belong to its curve, a sweep spec may not set what the sweep sets
itself. They all read this table.

    identity   changes what the trial computes or measures: its losses or its training time.
               Two trials that differ in one are different configs; a checkpoint never
               continues across one.
    replicate  the seed: runs of one config.
    label      names the run, or says where an imported run came from.
    placement  where and how the run is kept: neither a loss nor the training time depends
               on it.

A field this table does not list (one a newer ablate added, or an imported log's own) is
identity: an unforeseen field then tells configs apart instead of pooling them silently.

`workers` is identity (docs/sweeps.md, "Field roles"): the training time depends on it, and
on GPUs so do the numerics (the gradient average runs in bf16 across workers, in another order
than one GPU's accumulation); pooling worker counts would average times of different speeds,
and resuming on another count would splice two speeds into one curve.
"""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    IDENTITY = "identity"
    REPLICATE = "replicate"
    LABEL = "label"
    PLACEMENT = "placement"


IDENTITY, REPLICATE, LABEL, PLACEMENT = Role.IDENTITY, Role.REPLICATE, Role.LABEL, Role.PLACEMENT

ROLES: dict[str, Role] = {
    # The model (GPTConfig): its shape, attention, and the ablation's own axes.
    **dict.fromkeys((
        "vocab_size", "vocab_multiple", "eot_token", "n_layer", "n_head", "head_dim", "d_model",
        "mlp_ratio", "seq_len", "value_embeds", "attn_pattern", "skips", "attn_block",
        "window_final", "window_schedule", "window_full_at", "attn_scale", "rotary_min_freq",
        "logit_softcap", "extra_embeddings", "lambda_init", "token_lambdas", "token_lambda_init",
    ), IDENTITY),
    # The recipe (TrainConfig): the preset it starts from, the step budget (the lr schedule
    # spans it), batches (`batch_size` is shorthand for tokens_per_step), validation (where
    # and on what the loss is measured), optimisers and schedule.
    **dict.fromkeys((
        "preset", "num_iterations", "tokens_per_step", "batch_size", "val_every", "val_tokens",
        "val_seq_len", "cooldown_frac", "lr_muon", "muon_weight_decay", "muon_momentum",
        "muon_momentum_start", "muon_momentum_warmup", "muon_ns_coefficients", "muon_ns_steps",
        "muon_ns_dtype", "lr_embed", "lr_head", "lr_scalar", "adam_betas", "adam_eps",
    ), IDENTITY),
    # How it runs, where the numerics or the measured time follow: CPU or CUDA kernels
    # (precision and compile follow the device when "auto"), Inductor's fusions, bf16
    # storage, whether compile warm-up ran before the clock, how often the host syncs for the
    # divergence check, how gradients accumulate, how evaluation chunks the logits, and the
    # worker count (see the module doc).
    **dict.fromkeys((
        "device", "compile", "compile_tuning", "precision", "warmup_steps", "nan_check_every",
        "micro_tokens", "eval_chunks", "workers",
    ), IDENTITY),
    # An imported record log's own fields (results/logs.py): which record, on what hardware.
    **dict.fromkeys(("record", "variant", "date", "track", "hardware", "timed"), IDENTITY),
    "seed": REPLICATE,
    # Names: the sweep and the trial's id within it.
    "sweep": LABEL,
    "trial_id": LABEL,
    # Where an imported record log came from: its path, its content's hash, the other files
    # holding the same run, its place in a multi-run file. The runs of one record are
    # replicates of one config, as seeds are.
    **dict.fromkeys(("source", "sha256", "copies", "run"), LABEL),
    # Where the curve goes; where the shards are (the same shards in another folder are the
    # same data); checkpoints, taken at validation points while the training clock is stopped
    # (a resumed run equals an uninterrupted one); the final weights, written after the last
    # validation.
    **dict.fromkeys(("out", "data", "checkpoint_every", "save_weights"), PLACEMENT),
}

# The fields a sweep sets itself, and from where: a spec's [fixed] and [axes] may not set them.
SET_BY_SWEEP: dict[str, str] = {
    "seed": "[sweep] seeds", "preset": "[sweep] preset", "data": "[sweep] data",
    "out": "the sweep", "sweep": "[sweep] name", "trial_id": "the sweep",
    "workers": "[resources] workers",
}


def role(name: str) -> Role:
    """A field's role; identity for a field the table does not list."""
    return ROLES.get(name, IDENTITY)


def _having(*roles: Role) -> frozenset[str]:
    return frozenset(name for name, r in ROLES.items() if r in roles)


LABELS = _having(LABEL)
PLACEMENTS = _having(PLACEMENT)
REPLICATES = tuple(name for name, r in ROLES.items() if r == REPLICATE)  # the seed
# Fields two runs of one config may differ in: the report's config identity ignores them.
OUTSIDE_CONFIG = _having(REPLICATE, LABEL, PLACEMENT)
# Fields a run may change while it continues: a checkpoint resumes across them, a weights file
# matches its curve across them. The seed is not one: another seed is another run.
OUTSIDE_RUN = _having(LABEL, PLACEMENT)


def coordinates(axes: list[str] | tuple[str, ...]) -> list[str]:
    """The fields that tell a sweep's trials apart: its axes, then the replicate (seed)."""
    return [*axes, *REPLICATES]


def coordinates_of(config: dict, axes: list[str] | tuple[str, ...]) -> dict:
    """A trial's coordinates and their values (None for one its config lacks)."""
    return {k: config.get(k) for k in coordinates(axes)}
