# The two commands of the README: `make demo` and `make test`.
# Both create .venv and install exsync into it on first use, so a fresh clone needs nothing else.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.installed

.PHONY: demo run test lint bench venv clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

# The demo keeps each run's data until `make demo FRESH=1` (exsync demo --fresh).
demo: $(STAMP)
	$(BIN)/exsync demo $(if $(FRESH),--fresh)

run: $(STAMP)
	$(BIN)/exsync run

# The linters run first: a layering or typing mistake fails in seconds, not after the six-minute suite.
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy

test: lint
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/python -m bench.sweep
	$(BIN)/python -m bench.ingest
	$(BIN)/python -m bench.poll
	$(BIN)/python -m bench.payouts
	$(BIN)/python -m bench.footprint
	$(BIN)/python -m bench.payout_latency
	$(BIN)/python -m bench.console

clean:
	rm -rf $(VENV) .exsync-data
