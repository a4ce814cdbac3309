# The README's two commands: `make run` and `make test`. Everything installs into .venv with
# the tested pins in constraints.txt.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export BANDIT_SERVE_HOME ?= $(CURDIR)/var
CONFIG ?= configs/local.yaml
# Ray on a small machine: no usage stats prompt, logs deduplicated.
export RAY_USAGE_STATS_ENABLED := 0

.PHONY: install run demo-models test test-fast lint format clean

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

demo-models: install
	$(BIN)/bandit-serve demo-models

run: demo-models
	$(BIN)/serve run $(CONFIG)

# Test data that is not the project's to ship: the Open Bandit Dataset sample inside the obp
# source distribution on PyPI (two CSV files, checked by SHA-256, cached in the venv).
OBD := $(VENV)/share/obd/.fetched
$(OBD): $(STAMP) tests/bandits/ope/obd.py
	$(BIN)/python tests/bandits/ope/obd.py
	touch $(OBD)

test: install $(OBD) browser
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/pytest

# The browser tests/e2e/test_ui.py drives (under CI=true a missing one fails that test):
# Debian's chromium and chromium-driver, installed with apt-get when missing (sudo unless root).
.PHONY: browser
browser:
	@if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then \
	  SUDO=""; [ "$$(id -u)" -eq 0 ] || SUDO="sudo"; \
	  $$SUDO apt-get update -qq && \
	  $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver; \
	fi

test-fast: install
	$(BIN)/pytest -m "not slow and not e2e"

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) var .pytest_cache .ruff_cache .mypy_cache

# Regenerate the committed KubeRay manifests: cluster/rayservice*.yaml's serveConfigV2 from the
# configs/*.yaml each names, and the Grafana dashboard ConfigMap (tests/cluster checks drift).
.PHONY: manifests
manifests: install
	$(BIN)/python scripts/render_manifests.py

# Benchmarks (bench/): router overhead, state sync, regret, Chapelle & Li; writes bench/results/.
.PHONY: bench bench-quick
bench: install
	$(BIN)/python -m bench

bench-quick: install
	$(BIN)/python -m bench --quick
