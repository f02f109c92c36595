"""The README's Python examples run as written (doctest)."""

import doctest
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_the_readmes_python_examples_run_as_written(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    result = doctest.testfile(str(README), module_relative=False, optionflags=doctest.ELLIPSIS)
    assert result.attempted >= 10 and result.failed == 0
