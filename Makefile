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

.PHONY: install up test test-alongside test-fast test-e2e test-sqlite test-postgres test-compose lock lint \
	format cluster bench vendor clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

up: install
	$(BIN)/trainyard up

# The tiers (docs/development.md#tiers): `fast` runs in the test's own process on the real database
# and Redis, `e2e` starts real processes (workers, gunicorn, the CLI, servers of its own), `compose`
# runs the Docker cluster.
FAST := not e2e and not compose

# Everything CI runs: lint, the e2e tier with the fast tier alongside it, then the compose tier.
test: install lint test-alongside test-compose

test-fast: install
	$(BIN)/pytest -m "$(FAST)"

test-e2e: install
	$(BIN)/pytest -m "e2e and not compose"

# Both on SQLite, one after the other: every test but the compose tier's.
test-sqlite: install
	$(BIN)/pytest -m "not compose"

# The store, API and page tests of the fast tier again, on a throwaway PostgreSQL database; the
# tests that never touch the session's database are left out (they answered on SQLite already).
test-postgres: install
	TRAINYARD_TEST_DATABASE_URL=$(PG_TEST_URL) $(BIN)/pytest tests/shared tests/web -m "$(FAST)" \
	  --only-store-tests

# The image and the compose cluster as a user runs them (tests/compose/); skipped without Docker.
test-compose: install
	$(BIN)/pytest tests/compose -rA

# The e2e tier in the foreground and, alongside it, the fast tier on SQLite then on PostgreSQL at
# the lowest CPU priority, so the e2e tier's timings keep the CPU they need while the fast tiers
# use what it leaves idle. They share nothing (each tier has its own database and queues). The
# fast tiers write var/tests/TIER.log (and no pytest cache), shown once the e2e tier ends; any tier
# failing fails this target.
ALONGSIDE := fast postgres
test-alongside: install
	@mkdir -p var/tests && rm -f var/tests/*.log var/tests/*.status
	@( for tier in $(ALONGSIDE); do \
	     PYTEST_ADDOPTS="$$PYTEST_ADDOPTS -p no:cacheprovider" \
	       nice -n 19 $(MAKE) --no-print-directory test-$$tier >var/tests/$$tier.log 2>&1; \
	     echo $$? >var/tests/$$tier.status; \
	   done ) & \
	$(MAKE) --no-print-directory test-e2e; status=$$?; wait; \
	for tier in $(ALONGSIDE); do \
	  echo; echo "======== make test-$$tier (ran alongside the e2e tier, at nice 19) ========"; \
	  cat var/tests/$$tier.log; \
	done; \
	echo; echo "make test-e2e: exit $$status"; \
	for tier in $(ALONGSIDE); do \
	  echo "make test-$$tier: exit $$(cat var/tests/$$tier.status)"; \
	  [ "$$(cat var/tests/$$tier.status)" = 0 ] || status=1; \
	done; \
	exit $$status

# requirements.lock: every package the image installs, pinned with hashes for Linux x86_64 and
# CPython 3.11 (pyproject's dependencies and the flower extra). Keeps the pins that still fit;
# `make lock UPGRADE=1` takes the newest allowed.
lock: install
	$(BIN)/uv --version >/dev/null 2>&1 || $(BIN)/pip install --quiet 'uv>=0.5'
	$(BIN)/uv pip compile pyproject.toml --extra flower --generate-hashes \
	  --python-version 3.11 --python-platform x86_64-manylinux_2_28 \
	  --custom-compile-command 'make lock' $(if $(UPGRADE),--upgrade) --quiet -o requirements.lock

# ruff, then mypy in strict mode on shared/ and worker/ (pyproject.toml [tool.mypy]).
lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

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
