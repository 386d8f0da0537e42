# The two commands a newcomer needs: `make dev` and `make test`.
# Each creates the virtualenv and installs what is missing first.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
PACKAGES := core/adx_core workers/adx_workers api/adx_api operator/adx_operator cli/adx_cli

.PHONY: dev test lint typecheck pytest bench clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "ADX Core needs Python 3.11 or newer"'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

# Azurite (Azure Blob Storage for the tests) comes from npm, pinned by package-lock.json.
NODE_STAMP := node_modules/.installed-stamp
$(NODE_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $(NODE_STAMP)

dev: $(STAMP)
	$(BIN)/adx dev

test: lint typecheck pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	MYPYPATH=core:workers:api:operator:cli $(BIN)/mypy --strict --explicit-package-bases $(PACKAGES) bench

pytest: $(STAMP) $(NODE_STAMP)
	$(BIN)/python -m pytest --cov --cov-report=term-missing:skip-covered --cov-report=xml -q

bench: $(STAMP) $(NODE_STAMP)
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) node_modules .mypy_cache .ruff_cache .pytest_cache .coverage coverage.xml
