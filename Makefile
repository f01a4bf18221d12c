# mssante — `make demo` to try it, `make test` to check it, `make bench` to measure it.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint typecheck unit test-sqlite test-postgresql test-deps bench clean

$(STAMP): pyproject.toml
	@$(PY) -m venv $(VENV) 2>/dev/null || { sh scripts/install-system-deps.sh venv && $(PY) -m venv $(VENV); }
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	@touch $(STAMP)

demo: $(STAMP)
	$(BIN)/mssante demo --state-file demo-state.json

test-deps: $(STAMP)
	@sh scripts/install-system-deps.sh test

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

typecheck: $(STAMP)
	$(BIN)/mypy

test-sqlite: test-deps
	MSSANTE_TEST_DB=sqlite $(BIN)/pytest -q

test-postgresql: test-deps
	MSSANTE_TEST_DB=postgresql $(BIN)/pytest -q

test: lint typecheck test-sqlite test-postgresql

bench: test-deps
	@sh scripts/install-system-deps.sh bench
	$(BIN)/python bench/run.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis demo-state.json
