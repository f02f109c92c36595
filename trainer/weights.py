"""A trial's final weights: safetensors (no pickle) next to its curve, named by trial id.

`<storage>/<sweep>/curves/<trial_id>.parquet` has its weights in
`<storage>/<sweep>/weights/<trial_id>.safetensors`. The file's metadata holds the trial's
full config (the curve's `config`), so a file that belongs to another trial or config is
refused instead of being analysed as if it were this one. Written like the curves: a temp
file in the same folder, fsync, then a rename, so a crash leaves the old file or the new
one, never half of one.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ablate.core.errors import AblateError
from ablate.core.fields import PLACEMENTS
from ablate.core.files import atomic_path

FORMAT_KEY = "ablate.weights"  # metadata: the format version of the file
CONFIG_KEY = "ablate.config"  # metadata: JSON of the trial's full config (TrainConfig.to_flat)
FORMAT_VERSION = "1"
SUFFIX = ".safetensors"
LARGE_PRESETS = frozenset({"medium"})  # ~1.2 GB per trial in bf16: kept only on request


class WeightsError(AblateError):
    """A weights file that is missing, truncated, foreign or of another config; the message
    names the file."""


def weights_location(curve: str) -> str:
    """The weights of a curve path or URI: `.../curves/<id>.parquet` ->
    `.../weights/<id>.safetensors`; a curve outside a `curves` folder keeps its folder."""
    head, sep, name = curve.rpartition("/")
    folder, inner, last = head.rpartition("/")
    if last == "curves":
        head = f"{folder}{inner}weights"
    return f"{head}{sep}{name.removesuffix('.parquet')}{SUFFIX}"


def weights_path(curve: str | os.PathLike) -> Path:
    """`weights_location` for a local curve path."""
    return Path(weights_location(os.fspath(curve)))


def curve_of(weights: str | os.PathLike) -> Path:
    """The curve beside a weights file (the inverse of `weights_path`)."""
    path = Path(weights)
    stem = path.name.removesuffix(SUFFIX)
    folder = path.parent.parent / "curves" if path.parent.name == "weights" else path.parent
    return folder / f"{stem}.parquet"


def keeps_weights(config: Mapping[str, Any]) -> bool:
    """Whether a run saves its final weights: `save_weights`, or by default every preset
    whose weights are small (all but the record model)."""
    choice = config.get("save_weights")
    return bool(choice) if choice is not None else config.get("preset") not in LARGE_PRESETS


def save_weights(path: str | os.PathLike, state: Mapping[str, Any],
                 config: Mapping[str, Any]) -> Path:
    """Write a state dict (tensors, any dtype incl. bf16) with `config` in the metadata,
    atomically."""
    from safetensors.torch import save_file

    path = Path(path)
    tensors = {name: t.detach().to("cpu").contiguous() for name, t in state.items()}
    meta = {FORMAT_KEY: FORMAT_VERSION, CONFIG_KEY: json.dumps(dict(config), sort_keys=True,
                                                               default=str)}
    try:
        with atomic_path(path) as tmp:
            save_file(tensors, tmp, metadata=meta)
    except OSError as e:
        raise WeightsError(f"{path}: cannot write the weights ({e.strerror or e})") from None
    return path


def save_run_weights(curve: str | os.PathLike, model, config: Mapping[str, Any]) -> Path | None:
    """Save a finished run's model next to its curve, if the config keeps weights."""
    if not curve or not keeps_weights(config):
        return None
    return save_weights(weights_path(curve), model.state_dict(), config)


def saved_config(path: Path, meta: Mapping[str, str]) -> dict[str, Any]:
    """The trial config in a weights file's metadata; WeightsError if it is not ours."""
    if meta.get(FORMAT_KEY) is None or CONFIG_KEY not in meta:
        raise WeightsError(f"{path}: not an ablate weights file (no config in its metadata)")
    if meta[FORMAT_KEY] != FORMAT_VERSION:
        raise WeightsError(f"{path}: weights format {meta[FORMAT_KEY]!r} is not one this "
                           f"ablate reads ({FORMAT_VERSION})")
    try:
        config = json.loads(meta[CONFIG_KEY])
    except (json.JSONDecodeError, RecursionError):
        raise WeightsError(f"{path}: corrupt config in its metadata") from None
    if not isinstance(config, dict):
        raise WeightsError(f"{path}: corrupt config in its metadata (not a table)")
    return config


def config_differences(saved: Mapping[str, Any], expected: Mapping[str, Any],
                       ignore: frozenset[str] = PLACEMENTS) -> list[str]:
    """The fields (besides `ignore`) on which two flat configs differ, sorted; values are
    compared as JSON, so a tuple equals the list it was saved as. By default only placement
    fields (core.fields) may differ: weights belong to one trial, its labels and seed too."""
    encode = json.JSONEncoder(sort_keys=True, default=str).encode
    return sorted(k for k in (set(saved) | set(expected)) - ignore
                  if encode(saved.get(k)) != encode(expected.get(k)))


def load_weights(path: str | os.PathLike,
                 expected: Mapping[str, Any] | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """(state dict of CPU tensors, saved config); WeightsError if the file is missing,
    truncated, foreign, or (given `expected`, the curve's config) of another trial.

    The file is opened once: safetensors checks that it is whole (a header that parses,
    tensors that cover the file exactly), then the config, and only then are tensors read."""
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if path.is_dir():
        raise WeightsError(f"{path}: is a folder, not a weights file")
    if not path.exists():
        raise WeightsError(f"{path}: no weights file (the trial ran without save_weights, "
                           "or has not finished)")
    try:
        with safe_open(str(path), framework="pt") as f:
            config = saved_config(path, f.metadata() or {})
            if expected is not None and (differ := config_differences(config, expected)):
                key = differ[0]
                raise WeightsError(f"{path}: weights of another config ({key} = "
                                   f"{config.get(key)!r}, the curve has {expected.get(key)!r})")
            state = {name: f.get_tensor(name) for name in f.keys()}
    except WeightsError:
        raise
    except (SafetensorError, OSError, ValueError) as e:
        raise WeightsError(f"{path}: truncated or not a safetensors file "
                           f"({str(e).splitlines()[0] if str(e) else type(e).__name__})") from None
    return state, config
