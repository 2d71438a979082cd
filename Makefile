# spp-ticket-bridge — `make run` for a local bridge, `make test` for the whole suite.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PORT   ?= 8000
SANDBOX_PORT ?= 8081

.PHONY: run test test-faults lint install dev-install migrate clean soak bench

$(BIN)/activate:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.installed: requirements.txt | $(BIN)/activate
	$(BIN)/pip install --quiet -r requirements.txt
	touch $@

$(VENV)/.dev-installed: requirements.txt requirements-dev.txt | $(BIN)/activate
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $(VENV)/.installed $@

install: $(VENV)/.installed
dev-install: $(VENV)/.dev-installed

migrate: install
	$(BIN)/flask --app wsgi bridge migrate

## run: web (gunicorn) with the embedded worker, plus the SPP sandbox; SQLite under instance/
run: install
	@PYTHON=$(BIN)/python PORT=$(PORT) SANDBOX_PORT=$(SANDBOX_PORT) bash scripts/run-local.sh

## test: the whole suite (PostgreSQL tests run when TEST_DATABASE_URL is set)
test: dev-install
	$(BIN)/python -m pytest $(PYTEST_ARGS)

## test-faults: the long fault suite (500 events, SIGKILLed workers, PostgreSQL stopped and started)
test-faults: dev-install
	BRIDGE_FAULTS=long $(BIN)/python -m pytest tests/faults $(PYTEST_ARGS)

## bench: accept, drain and pipeline rates beside their floors, one table + bench/results/*.json (about 15 min; not in CI)
bench: dev-install
	$(BIN)/python bench/bench.py $(BENCH_ARGS)

## soak: a steady webhook rate for 10 minutes against its own stack; prints the counts (not in CI)
soak: dev-install
	$(BIN)/python bench/soak.py $(SOAK_ARGS)

lint: dev-install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy bridge config

clean:
	rm -rf $(VENV) instance/bridge.db*
