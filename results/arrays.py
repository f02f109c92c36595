"""Arrow arrays as numpy arrays, read from their buffers.

pyarrow's own `to_numpy` goes through its pandas conversion, which imports pandas (where it
is installed) the first time in a process that has imported pyarrow.parquet: most of a
second of a report's time, for nothing pandas does.
"""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


def values(array: pa.Array) -> np.ndarray:
    """An integer or floating array's values: a read-only view of its buffer, or, where
    it has nulls, a float64 copy with NaN for them (as pyarrow's to_numpy gives)."""
    kind = array.type
    if not (pa.types.is_integer(kind) or pa.types.is_floating(kind)):
        raise TypeError(f"not an integer or floating array: {kind}")
    if array.null_count:
        array = pc.fill_null(array.cast(pa.float64()), math.nan)
        kind = array.type
    code = "f" if pa.types.is_floating(kind) else "i" if pa.types.is_signed_integer(kind) else "u"
    dtype = np.dtype(f"{code}{kind.bit_width // 8}")
    data = array.buffers()[1]
    if len(array) == 0 or data is None:
        return np.zeros(0, dtype)
    return np.frombuffer(data, dtype, count=len(array), offset=array.offset * dtype.itemsize)


def positions(rows: np.ndarray) -> pa.Array:
    """Row positions (for `take`) as an int64 Arrow array over their own memory: pa.array()
    would import pandas too."""
    rows = np.ascontiguousarray(rows, dtype=np.int64)
    return pa.Array.from_buffers(pa.int64(), len(rows), [None, pa.py_buffer(rows)])
