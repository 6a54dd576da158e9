# The two commands of the README: `make run` and `make test`.
# On first use they create .venv and install the project with its test and dev extras.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test lint bench clean

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "make: $(PYTHON) is not installed; install it first (apt-get install python3)." >&2; exit 1; }
	@$(PYTHON) -c 'import venv, ensurepip' >/dev/null 2>&1 || { echo "make: Python's venv module is missing; install it with: apt-get install python3-venv" >&2; exit 1; }
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,dev]'
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

clean:
	rm -rf $(VENV) dist build .pytest_cache .mypy_cache .ruff_cache
