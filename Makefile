# The two commands of the README: `make run` and `make test`.
# On first use they create .venv and install the project with its test and dev extras, at
# the versions (and sha256 hashes) of requirements.lock; `make lock` regenerates that file
# from the ranges in pyproject.toml (LOCK_ARGS=--upgrade, or --upgrade-package NAME, to move
# pins; without them pip-compile keeps every pin that still fits).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
LOCKED := $(VENV)/.locked
LOCK   := requirements.lock

.PHONY: run test lint bench lock clean

# The venv with everything in the lock. pip, setuptools and wheel are pinned there too
# (--allow-unsafe), so nothing is installed unhashed: the venv's own pip (whatever
# ensurepip had) first installs the locked pip, from its entry in the lock alone, and that
# pip installs the rest (twice as fast as pip 23 does). The lock is compiled on Python 3.11
# and installs on 3.11 to 3.13; not on 3.10, where import-linter>=2.16 and several pins
# are not to be had.
$(LOCKED): $(LOCK)
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "make: $(PYTHON) is not installed; install it first (apt-get install python3)." >&2; exit 1; }
	@$(PYTHON) -c 'import venv, ensurepip' >/dev/null 2>&1 || { echo "make: Python's venv module is missing; install it with: apt-get install python3-venv" >&2; exit 1; }
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { echo "make: the tools of $(LOCK) need Python 3.11 or later, and $(PYTHON) is $$($(PYTHON) -V 2>&1); name another with: make PYTHON=python3.11" >&2; exit 1; }
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@sed -n '/^pip==/,/# via/p' $(LOCK) > $(VENV)/pip.lock
	$(BIN)/python -m pip install --quiet --require-hashes --no-deps -r $(VENV)/pip.lock
	$(BIN)/python -m pip install --quiet --require-hashes -r $(LOCK)
	@touch $(LOCKED)

# Then the project, without deps: the lock holds them all (its build backend, hatchling,
# comes through pip's build isolation). pip check fails when the lock no longer meets the
# runtime requirements of pyproject.toml (a pin or range changed there without `make lock`).
$(STAMP): pyproject.toml $(LOCK) $(LOCKED)
	$(BIN)/python -m pip install --quiet --no-deps -e .
	@$(BIN)/python -m pip check >/dev/null || { $(BIN)/python -m pip check; echo "make: $(LOCK) does not meet pyproject.toml; regenerate it with: make lock" >&2; exit 1; }
	@touch $(STAMP)

run: $(STAMP)
	$(BIN)/observatory $(ARGS)

# pytest exits 5 when it collected no test: that must fail, and it does here
# because make fails on any non-zero exit.
test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff format --check app tests bench
	$(BIN)/ruff check app tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports --no-cache --no-logo

bench: $(STAMP)
	$(BIN)/python bench/poll_vs_ss.py
	$(BIN)/python bench/ui_churn.py
	$(BIN)/python bench/ui_dashboard.py

# The header pip-compile writes into the lock records this same command.
# The lock's header records this same pip-compile command (less LOCK_ARGS).
lock: $(LOCKED)
	$(BIN)/pip-compile --quiet --allow-unsafe --strip-extras --generate-hashes \
		--no-emit-index-url --no-emit-find-links --extra test --extra dev \
		$(LOCK_ARGS) -o $(LOCK) pyproject.toml

clean:
	rm -rf $(VENV) dist build .pytest_cache .mypy_cache .ruff_cache
