# Two commands do everything on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Datasets and benchmark caches stay inside the repository (git-ignored) unless you point
# MTLKIT_DATA elsewhere, e.g. at a folder that already holds mnist/ and fashion-mnist/.
export MTLKIT_DATA ?= $(CURDIR)/data-cache

.PHONY: demo test install lint clean

# The virtual environment, rebuilt when the project's metadata changes. torch is installed first,
# pinned, so that machines with the CPU wheel on disk take it instead of a multi-GB CUDA build.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/mtlkit baselines configs/multi-mnist.yaml --out runs/demo --overwrite

test: $(STAMP)
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks

clean:
	rm -rf runs .pytest_cache
