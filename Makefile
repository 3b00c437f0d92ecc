# Two commands do all the set-up on a fresh clone: `make demo` and `make test`. Each first
# checks the machine (scripts/prereqs.sh): as root it installs what is missing with
# apt-get, otherwise it stops with one line per missing tool and the command to install it.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo demo-broker test lint prereqs-demo prereqs-test bench-scrape bench-quality \
	bench-compare bench-predict clean

# Listed first among a target's prerequisites, so it runs before the venv is built.
prereqs-demo prereqs-test:
	@PYTHON=$(PYTHON) bash scripts/prereqs.sh $(@:prereqs-%=%)

# Recreated when pyproject.toml changes, so a pulled dependency change is never missed.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: prereqs-demo $(STAMP)
	$(BIN)/anigenre --data-dir data/demo demo

demo-broker: prereqs-demo $(STAMP)
	$(BIN)/anigenre --data-dir data/demo-broker demo --broker redis://127.0.0.1:6379/0

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: prereqs-test lint
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
