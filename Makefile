# Fresh machine → `make run` serves CareLoop; `make test` runs the whole suite.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml requirements.lock | cksum | cut -d' ' -f1)

.PHONY: run test lint audit lock install worker migrate seed-demo openapi bench clean

# Installs exactly what was tested: every package pinned with its hashes in requirements.lock (from
# pyproject.toml's ranges by `make lock`), then CareLoop itself without resolving anything more.
$(STAMP): pyproject.toml requirements.lock
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet --require-hashes -r requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps -e .
	@rm -f $(VENV)/.installed-* && touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/careloop serve --seed-demo

worker: $(STAMP)
	$(BIN)/careloop worker

migrate: $(STAMP)
	$(BIN)/careloop migrate

seed-demo: $(STAMP)
	$(BIN)/careloop seed-demo --if-missing

# ruff, the architecture contracts (import-linter, [tool.importlinter] in pyproject.toml), mypy on core.
lint: $(STAMP)
	$(BIN)/ruff check app tests bench migrations
	$(BIN)/lint-imports
	$(BIN)/mypy app/core

# Known advisories in the locked set (asks an advisory service: run it where the network reaches one, not in CI).
audit: $(STAMP)
	$(BIN)/python -m pip install --quiet pip-audit
	$(BIN)/pip-audit --require-hashes --disable-pip -r requirements.lock

# Re-pin requirements.lock after a change to pyproject.toml's dependencies (all platforms, with hashes).
lock: $(STAMP)
	$(BIN)/python -m pip install --quiet uv
	$(BIN)/uv pip compile pyproject.toml --extra test --generate-hashes --universal --python-version 3.11 \
	  -o requirements.lock

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

openapi: $(STAMP)
	$(BIN)/careloop export-openapi
	$(BIN)/careloop export-events

bench: $(STAMP)
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
