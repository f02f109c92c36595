"""Reading and analysing curve files: never imports torch or ray.

curves (the file contract) -> load (files to one table) -> trials (curves) -> configs
(config identity) -> replicates (distinct seeds) -> stats, target, pareto, compare (the
numbers) -> report (all of them per config) -> render, plots (output); logs (record logs
in and out); cli (the commands).

The public surface, for programs such as the sweep driver (imported on first use, so that
`import ablate.results.curves` stays light):

    report = build_report(paths, target=None, axes=None, baseline=None, alpha=0.05)
    for line in warning_lines(report): print(line, file=sys.stderr)
    write_report(report, sys.stdout, "table")   # or "markdown", "csv", "json"
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_PUBLIC = {
    "build_report": "report", "analyse": "report", "Report": "report",
    "ConfigResult": "report", "write_report": "render", "warning_lines": "render",
    "BaselineChoice": "compare", "InputError": "errors", "CurveError": "curves",
    "write_curve": "curves", "read_curve": "curves", "load_curves": "load",
}
__all__ = sorted(_PUBLIC)


def __getattr__(name: str) -> Any:
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module 'ablate.results' has no attribute {name!r}")
    return getattr(import_module(f"ablate.results.{module}"), name)
