# tfopt: `make demo` and `make test` work on a fresh machine (Python 3.11, network to PyPI).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-fast lint bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)  ## Train a digits CNN, convert to every precision, check, time, report.
	$(BIN)/tfopt demo --out demo-out --overwrite

test: $(STAMP)  ## Lint, then the whole test suite.
	$(BIN)/ruff check tfopt converters tests benchmarks examples
	$(BIN)/python -m pytest -q

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow"

lint: $(STAMP)
	$(BIN)/ruff check tfopt converters tests benchmarks examples
	$(BIN)/mypy tfopt converters --ignore-missing-imports

bench: $(STAMP)  ## Harness vs LiteRT's own benchmark tool (writes benchmarks/results/).
	$(BIN)/python benchmarks/harness_vs_litert.py

clean:
	rm -rf $(VENV) demo-out .pytest_cache
