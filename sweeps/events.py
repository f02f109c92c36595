"""The `--json-log` stream: one strict JSON object per line, per event (docs/sweeps.md lists
them). NaN and infinities (a diverged loss) become null, as JSON has neither."""

from __future__ import annotations

import json
import time
from typing import IO, Any


def emit(stream: IO[str], event: str, **fields: Any) -> None:
    from ablate.core.files import jsonable

    record = {"event": event, "time": round(time.time(), 3), **fields}
    stream.write(json.dumps(jsonable(record), default=str, allow_nan=False) + "\n")
    stream.flush()
