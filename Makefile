# trainyard: `make up` runs it on the embedded defaults, `make test` runs every test.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
# MNIST: the shared copy beside this checkout when there is one (else the worker downloads it).
MNIST ?= $(wildcard $(abspath ../shared/datasets/mnist))
ifneq ($(MNIST),)
export TRAINYARD_DATA_DIR ?= $(MNIST)
endif
# The PostgreSQL server the store tests also run on (each run makes and drops its own database).
PG_TEST_URL ?= postgresql+psycopg://postgres@127.0.0.1:5432/postgres
WORKERS ?= 2

.PHONY: install up test test-sqlite test-postgres test-compose lock lint format cluster bench vendor clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

up: install
	$(BIN)/trainyard up

test: install lint test-sqlite test-postgres test-compose

test-sqlite: install
	$(BIN)/pytest

test-postgres: install
	TRAINYARD_TEST_DATABASE_URL=$(PG_TEST_URL) $(BIN)/pytest tests/shared tests/web -m "not slow and not browser"

# The image and the compose cluster as a user runs them (tests/compose/); skipped without Docker.
test-compose: install
	$(BIN)/pytest tests/compose -rA

# requirements.lock: every package the image installs, pinned with hashes for Linux x86_64 and
# CPython 3.11 (pyproject's dependencies and the flower extra). Keeps the pins that still fit;
# `make lock UPGRADE=1` takes the newest allowed.
lock: install
	$(BIN)/uv --version >/dev/null 2>&1 || $(BIN)/pip install --quiet 'uv>=0.5'
	$(BIN)/uv pip compile pyproject.toml --extra flower --generate-hashes \
	  --python-version 3.11 --python-platform x86_64-manylinux_2_28 \
	  --custom-compile-command 'make lock' $(if $(UPGRADE),--upgrade) --quiet -o requirements.lock

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

cluster: install
	TRAINYARD_BROKER_URL=$${TRAINYARD_BROKER_URL:-redis://127.0.0.1:6379/0} \
	TRAINYARD_DATABASE_URL=$${TRAINYARD_DATABASE_URL:-postgresql+psycopg://postgres@127.0.0.1:5432/trainyard} \
	$(BIN)/trainyard cluster --workers $(WORKERS)

# Runs every bench (bench/report.py's BENCHES) and writes their figures, dated, to
# docs/benchmarks.md; none of them is a test. `make bench ONLY="faults parity"` runs some.
bench: install
	$(BIN)/python -m bench.report $(foreach name,$(ONLY),--only $(name))

vendor:
	cd $$(mktemp -d) && npm pack --silent chart.js@4 && tar xzf chart.js-*.tgz \
	  && cp package/dist/chart.umd.min.js package/LICENSE.md $(CURDIR)/web/static/vendor/chartjs/

clean:
	rm -rf $(VENV) var artifacts .pytest_cache .ruff_cache
