# Two commands do all the set-up on a fresh clone: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo demo-broker test lint bench-scrape bench-quality bench-compare bench-predict clean

# Recreated when pyproject.toml changes, so a pulled dependency change is never missed.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/anigenre --data-dir data/demo demo

demo-broker: $(STAMP)
	$(BIN)/anigenre --data-dir data/demo-broker demo --broker redis://127.0.0.1:6379/0

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: lint
	$(BIN)/pytest

bench-scrape: $(STAMP)
	$(BIN)/python bench/scrape.py

bench-quality: $(STAMP)
	$(BIN)/python bench/quality.py

bench-predict: $(STAMP)
	$(BIN)/python bench/predict.py

bench-compare: $(STAMP)
	$(BIN)/python bench/compare.py

clean:
	rm -rf $(VENV) data/demo data/demo-broker data/bench .pytest_cache .ruff_cache
