# The two commands a newcomer needs: `make demo` and `make test` (see README.md).
# Both create and reuse the virtual environment in .venv/.

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
DEMO_DIR ?= build/demo
PORT ?= 8000
CHROMIUM := /usr/bin/chromium

.PHONY: demo stop test lint typecheck install clean

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

# The main job end to end: local AWS (moto server), sample data, events through
# POST /events -> Kinesis -> ingest, the retraining pipeline, the API on 127.0.0.1:$(PORT).
demo: $(INSTALLED)
	$(BIN)/learnrec local demo --out $(DEMO_DIR) --port $(PORT)

# Ends what `make demo` started (per its pid files in $(DEMO_DIR)/run), nothing else.
stop:
	@if [ -x $(BIN)/learnrec ]; then $(BIN)/learnrec local stop --out $(DEMO_DIR); \
	else echo "nothing to stop: $(BIN)/learnrec is not installed"; fi

lint: $(INSTALLED)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(INSTALLED)
	$(BIN)/mypy

test: $(INSTALLED) node_modules/.installed $(CHROMIUM) lint typecheck
	$(BIN)/pytest

# The pinned AWS CDK CLI and cdklocal (package-lock.json); tests/cdk runs `cdk synth`.
node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund
	@touch $@

# The browser test drives Debian's Chromium (never a downloaded browser); as root (CI)
# it is installed here, otherwise the command to run is printed.
$(CHROMIUM):
	@if [ "$$(id -u)" = 0 ]; then \
		export DEBIAN_FRONTEND=noninteractive; \
		apt-get install -y -q chromium </dev/null \
		|| { apt-get update -q </dev/null && apt-get install -y -q chromium </dev/null; }; \
	else echo "the browser test needs Chromium: sudo apt-get install chromium"; exit 1; fi

clean:
	rm -rf build .pytest_cache .mypy_cache .ruff_cache
