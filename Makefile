# Two commands do all set-up on a fresh machine with python3, pip and make:
#   make demo   — the daily flow on the bundled pages, email to ./outbox (no network, no SMTP)
#   make test   — the test suite
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml constraints.txt | cksum | cut -d' ' -f1)

.PHONY: demo test lint format bench bench-quick install clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# constraints.txt pins every package to the versions the suite was tested with
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev,dask]'
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/paperdigest run --offline warehouse/samples/seeds --date 2025-11-03

test: $(STAMP)
	$(BIN)/pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

bench: $(STAMP)
	$(BIN)/python bench/run_all.py

bench-quick: $(STAMP)
	$(BIN)/python bench/run_all.py --quick

clean:
	rm -rf outbox preview warehouse/papers.duckdb warehouse/papers.duckdb.wal .prefect test-artifacts
