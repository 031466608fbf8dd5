# The two set-up commands of the README: `make demo` and `make test`.
# Each creates the virtual environment it needs.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint typecheck unit bench compare clean

$(STAMP): pyproject.toml requirements.lock
	scripts/bootstrap
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
# setuptools' editable install always warns that a folder named like the package may
# shadow it (colonyp2p/ is that package): one filter for that one notice
	PYTHONWARNINGS="ignore:Editable installation" \
		$(BIN)/pip install -q -c requirements.lock -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/colonynode demo

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	scripts/typecheck-tree
	$(BIN)/mypy -p colonyp2p
	$(BIN)/mypy tests bench

unit: $(STAMP)
	$(BIN)/pytest

test: lint typecheck unit

bench: $(STAMP)
	$(BIN)/python bench/bench_sim.py

# colonyp2p against Celery, Dask and Ray (installs them into bench/compare/.venv)
compare: $(STAMP)
	$(BIN)/python bench/compare/run.py $(ARGS)

clean:
	rm -rf $(VENV) build .mypy_cache .pytest_cache .ruff_cache
