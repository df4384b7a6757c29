# The two commands a newcomer needs: `make demo` and `make test` (see README.md).
# Both create and reuse the virtual environment in .venv/.

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
DEMO_DIR ?= build/demo

.PHONY: demo test lint typecheck install clean

$(INSTALLED): pyproject.toml requirements/constraints.txt requirements/training-nodeps.txt
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
		|| { echo "learnrec needs Python 3.11 or newer (set PYTHON=...)"; exit 1; }
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c requirements/constraints.txt -e '.[serving,training,postgres,dev,cdk]'
	@# TFRS and tf-keras without their dependencies, or pip pulls a second TensorFlow.
	$(BIN)/python -m pip install --quiet --no-deps -c requirements/constraints.txt -r requirements/training-nodeps.txt
	@touch $@

install: $(INSTALLED)

demo: $(INSTALLED)
	$(BIN)/learnrec data generate --users 1000 --items 500 --events 10000 --seed 42 --out $(DEMO_DIR)/data
	$(BIN)/learnrec catalog load --data $(DEMO_DIR)/data --database-url sqlite:///$(DEMO_DIR)/learnrec.db
	$(BIN)/learnrec benchmark quality --dataset sample --seed 42 --out $(DEMO_DIR)/quality
	@echo
	@echo "Report:       $(DEMO_DIR)/quality/report.md"
	@echo "Model bundle: $(DEMO_DIR)/quality/bundle (manifest.json lists every file)"

lint: $(INSTALLED)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(INSTALLED)
	$(BIN)/mypy

test: $(INSTALLED) lint typecheck
	$(BIN)/pytest

clean:
	rm -rf build .pytest_cache .mypy_cache .ruff_cache
