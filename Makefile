# Two entry points for a fresh machine: `make repro` (pipeline) and `make test` (tests).
# Both create the virtual environment when it is missing or out of date; re-running is a no-op.
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Stage commands call `python`: make it the environment's.
export PATH := $(abspath $(BIN)):$(PATH)
export DVC_NO_ANALYTICS := 1
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: setup repro compare test test-fast lint bench browser

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	@command -v $(PYTHON) >/dev/null || { echo "$(PYTHON) not found: install Python 3.11 or run make PYTHON=python3"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade "pip>=24"
	$(BIN)/python -m pip install -q -c constraints.txt -e ".[dev]"
	touch $(STAMP)

# One local Prefect server (127.0.0.1) serves every training/evaluation flow run of the repro.
repro: $(STAMP)
	$(BIN)/python scripts/prefect_session.py $(BIN)/dvc repro

# The full seed set: three seeds per method as a DVC experiment (the workspace keeps its results; the
# report then says "3 seeds"). `dvc exp apply` / `git checkout params.yaml && dvc repro` go back.
COMPARE_SEEDS ?= [42,43,44]
compare: $(STAMP)
	$(BIN)/python scripts/prefect_session.py $(BIN)/dvc exp run -S 'seeds=$(COMPARE_SEEDS)'

# Debian's chromium + chromium-driver drive the web page in tests/test_serve_browser.py: installed with
# apt-get when missing (CI runs as root); MEDPROBCLIP_SKIP_BROWSER=1 opts out of that test instead.
browser:
	@if [ -x /usr/bin/chromedriver ] && [ -x /usr/bin/chromium ]; then :; \
	elif [ -n "$$MEDPROBCLIP_SKIP_BROWSER" ]; then echo "browser: MEDPROBCLIP_SKIP_BROWSER set, the browser test will skip"; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver; \
	else echo "browser: /usr/bin/chromedriver missing; run 'sudo apt-get install chromium chromium-driver'" \
	  "(Debian/Ubuntu), or set MEDPROBCLIP_SKIP_BROWSER=1 to skip the browser test"; exit 1; fi

test: $(STAMP) browser
	$(BIN)/python -m pytest

test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not slow"

lint: $(STAMP)
	$(BIN)/ruff check . && $(BIN)/ruff format --check . && $(BIN)/lint-imports
