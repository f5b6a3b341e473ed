# Two commands do everything on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
TORCH_VERSION := 2.13.0
VENV := .venv
BIN := $(VENV)/bin
# Two stamps: the package with its core dependencies (all that `make demo` runs), and the `dev`
# extra on top of it (the test, lint and reference-solver packages that `make test` needs).
# `make test` after `make demo` adds the extra; `make demo` after `make test` installs nothing.
CORE_STAMP := $(VENV)/.installed-core
DEV_STAMP := $(VENV)/.installed-dev
# The exact versions the suite and the demo run against (pyproject.toml keeps ranges for users).
CONSTRAINTS := constraints.txt
# Datasets and benchmark caches stay inside the repository (git-ignored) unless you point
# MTLKIT_DATA elsewhere, e.g. at a folder that already holds mnist/ and fashion-mnist/.
export MTLKIT_DATA ?= $(CURDIR)/data-cache

.PHONY: demo test install install-core lock lint clean bench bench-peers

# The virtual environment, rebuilt when the project's metadata or the pins change. pip installs
# torch, pinned, first: it reads the machine's pip configuration, so that machines with the CPU
# wheel on disk (a find-links folder) take it instead of a multi-GB CUDA build. --no-compile: pip
# would byte-compile every module of every package (two thirds of torch's install time); Python
# compiles the modules a run imports, once, on first import. The same pip call installs uv, which
# then installs the rest at the versions in $(CONSTRAINTS), in 3 s where pip took 17 s. uv reads
# none of pip's configuration: from PyPI unless UV_DEFAULT_INDEX, UV_INDEX or UV_FIND_LINKS say
# otherwise, with the system's certificates or SSL_CERT_FILE. INSTALLER=pip installs the rest
# with pip as well, for a machine that reaches the packages only through pip's configuration.
INSTALLER ?= uv
PIP_INSTALL := $(BIN)/python -m pip install --quiet --no-compile -c $(CONSTRAINTS)
ifeq ($(INSTALLER),uv)
INSTALL := $(BIN)/uv pip install --quiet --python $(BIN)/python -c $(CONSTRAINTS)
else ifeq ($(INSTALLER),pip)
INSTALL := $(PIP_INSTALL)
else
$(error INSTALLER=$(INSTALLER): give uv (the default) or pip)
endif

$(CORE_STAMP): pyproject.toml $(CONSTRAINTS)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP_INSTALL) torch uv
	$(INSTALL) -e .
	touch $(CORE_STAMP)

$(DEV_STAMP): $(CORE_STAMP)
	$(INSTALL) -e '.[dev]'
	touch $(DEV_STAMP)

install-core: $(CORE_STAMP)

install: $(DEV_STAMP)

# The demo installs only the core dependencies and closes with the wall time of each phase
# (whole seconds: `date +%s` is the portable clock). DEMO_ARGS is added to its command, e.g.
# DEMO_ARGS='--set data.limit=600 --set train.epochs=1' for a smoke run.
demo:
	@start=$$(date +%s) && \
	$(MAKE) --no-print-directory install-core && \
	installed=$$(date +%s) && \
	$(BIN)/mtlkit baselines configs/multi-mnist.yaml --out runs/demo --overwrite $(DEMO_ARGS) && \
	end=$$(date +%s) && \
	echo "make demo took $$((end - start)) s: install $$((installed - start)) s, data and trainings $$((end - installed)) s"

test: $(DEV_STAMP)
	$(BIN)/python -m pytest

# Refresh $(CONSTRAINTS): resolve the newest versions pyproject.toml allows in a scratch
# environment and pin them all (torch's local build tag, e.g. +cpu, is dropped so that the pin
# matches the CPU and the CUDA builds alike). Run it with the oldest Python the project supports
# (requires-python), so that every pinned version exists for it; TORCH_VERSION is the torch it pins.
lock:
	rm -rf .lock-venv
	$(PYTHON) -m venv .lock-venv
	.lock-venv/bin/python -m pip install --quiet torch==$(TORCH_VERSION) uv
	.lock-venv/bin/python -m pip install --quiet -e '.[dev]'
	{ echo "# Pinned by 'make lock' on $$(date -u +%F) for Python $$(.lock-venv/bin/python -c 'import platform; print(platform.python_version())'); do not edit by hand."; \
	  .lock-venv/bin/python -m pip freeze --exclude-editable | sed -E 's/\+[a-z0-9.]+$$//'; } > $(CONSTRAINTS).new
	mv $(CONSTRAINTS).new $(CONSTRAINTS)
	rm -rf .lock-venv

# Every performance benchmark (benchmarks/bench.py), one intra-op thread, into benchmarks/RESULTS.md
# (about 8 minutes on 2 cores at load average 2-4, 7 minutes of CPU time; BENCH_ARGS=--quick for a
# smoke run).
bench: $(DEV_STAMP)
	cd benchmarks && OMP_NUM_THREADS=1 PYTHONPATH=$(CURDIR)/src ../$(BIN)/python bench.py $(BENCH_ARGS)

# The peers (torchjd, LibMTL) live in their own environment, $(BENCH_VENV), never in the package's
# dependencies: the same torch and mtlkit (editable) plus the pinned peers. LibMTL goes in with
# --no-deps (its metadata requires torchvision, which the weighting classes do not import).
BENCH_PYTHON ?= python3.11
BENCH_VENV := .venv-bench
BENCH_STAMP := $(BENCH_VENV)/.installed
PEERS := benchmarks/requirements-peers.txt benchmarks/requirements-peers-nodeps.txt

$(BENCH_STAMP): pyproject.toml $(CONSTRAINTS) $(PEERS)
	test -x $(BENCH_VENV)/bin/python || $(BENCH_PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/python -m pip install --quiet -c $(CONSTRAINTS) torch==$(TORCH_VERSION)
	$(BENCH_VENV)/bin/python -m pip install --quiet -c $(CONSTRAINTS) -e .
	$(BENCH_VENV)/bin/python -m pip install --quiet -c $(CONSTRAINTS) -r benchmarks/requirements-peers.txt
	$(BENCH_VENV)/bin/python -m pip install --quiet --no-deps -r benchmarks/requirements-peers-nodeps.txt
	touch $(BENCH_STAMP)

# mtlkit against torchjd and LibMTL (benchmarks/peers.py), same network, batch and step, one
# intra-op thread, into benchmarks/RESULTS-peers.md (3-4 minutes on 2 cores, plus about 5 to build
# $(BENCH_VENV) the first time; BENCH_ARGS=--quick for a smoke run).
bench-peers: $(BENCH_STAMP)
	cd benchmarks && OMP_NUM_THREADS=1 PYTHONPATH=$(CURDIR)/src ../$(BENCH_VENV)/bin/python peers.py $(BENCH_ARGS)

lint: $(DEV_STAMP)
	$(BIN)/ruff check src tests benchmarks

clean:
	rm -rf runs .pytest_cache
