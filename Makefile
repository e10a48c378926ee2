# Two entry points: `make run` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: run inspect-sample test lint typecheck pytest bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

## run: start certward on its embedded defaults (./certward-data, 127.0.0.1:8700)
run: $(VENV)/.installed
	$(BIN)/certward serve

## inspect-sample: judge the sample client certificate with the CLI
inspect-sample: $(VENV)/.installed
	$(BIN)/certward inspect samples/partner-client.p12 \
		--password-file samples/partner-client.password --as client-certificate

## test: lint, type-check and run the whole test suite
test: lint typecheck pytest

lint: $(VENV)/.installed
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

typecheck: $(VENV)/.installed
	$(BIN)/mypy src

pytest: $(VENV)/.installed
	$(BIN)/pytest $(PYTEST_ARGS)

## bench: run every benchmark script (prints ratios against in-run baselines)
bench: $(VENV)/.installed
	for script in benchmarks/bench_*.py; do $(BIN)/python $$script || exit 1; done

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis
