# Two commands on a fresh machine: `make demo` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
# The install is editable in "strict" mode: a tree of links under build/, which type checkers
# read as they read site-packages (the default mode's import hook is invisible to them). That
# tree only links the files there at install time, so the list of package files is kept in
# MODULES and the tree is re-linked when a file is added or removed (not when one is edited).
# (PYTHONWARNINGS: setuptools warns on every strict install that build/ must be kept.)
MODULES := $(VENV)/.modules
STRICT := -e . --config-settings editable_mode=strict
# The package folders, as pyproject.toml's package-dir maps them (read by the shell, once the
# venv's Python exists).
PKG_DIRS := $$($(BIN)/python -c "import tomllib; print(*sorted(set(tomllib.load(open('pyproject.toml', 'rb'))['tool']['setuptools']['package-dir'].values())))")
LIST_MODULES := find $(PKG_DIRS) -name '*.py' -o -name '*.toml' | LC_ALL=C sort

.PHONY: install relink demo test lint bench gpu-check clean

install: relink

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[test]' --config-settings editable_mode=strict
	$(LIST_MODULES) > $(MODULES)
	touch $(STAMP)

relink: $(STAMP)
	@$(LIST_MODULES) > $(MODULES).now
	@if cmp -s $(MODULES).now $(MODULES); then rm $(MODULES).now; else \
		echo "package files added or removed: re-linking the editable install"; \
		PYTHONWARNINGS=ignore $(BIN)/python -m pip install --quiet --no-deps --no-build-isolation $(STRICT) && \
		mv $(MODULES).now $(MODULES); fi

demo: relink
	$(BIN)/ablate sweep sweeps/presets/demo.toml --storage runs/demo-$$(date +%Y%m%d-%H%M%S)

# Two pytest processes, a test file each at a time (a file's fixtures stay in one), the
# longest files first in conftest's order (which xdist would otherwise re-sort by test
# count); each has its own embedded Ray in its own temp folder (tests/conftest.py). The
# slowest 20 tests are listed at the end.
TEST_WORKERS ?= 2

test: relink
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder --durations=20

# ruff, then basedpyright over the package folders ([tool.basedpyright] in pyproject.toml).
lint: relink
	$(BIN)/ruff check .
	$(BIN)/basedpyright -p pyproject.toml

bench: relink
	$(BIN)/python bench/throughput.py

# On a GPU machine, from a bare checkout (no install needed): the gpu tests and the speed check.
gpu-check:
	bash bench/gpu_check.sh

clean:
	rm -rf $(VENV) build runs data .pytest_cache
