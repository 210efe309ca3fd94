# Two commands for a fresh machine:  make run  (set up + start the app)  and  make test.
# Both create .venv and install what they need into it; re-running is cheap (stamp files).

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
APP_STAMP := $(VENV)/.app-installed
TEST_STAMP := $(VENV)/.test-installed
PORT ?= 8501

.PHONY: run test lint format bench chromium clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(APP_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	touch $@

$(TEST_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[test,dev]'
	touch $@ $(APP_STAMP)

run: $(APP_STAMP)
	$(BIN)/nocode-ml serve --port $(PORT)

# Debian's chromium drives the browser tests (Playwright's own browser download is not used).
chromium:
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "installing Debian chromium for the browser tests"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq chromium >/dev/null; }

test: $(TEST_STAMP) chromium
	$(BIN)/ruff check .
	$(BIN)/python -m pytest

lint: $(TEST_STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(TEST_STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

bench: $(TEST_STAMP)
	$(BIN)/python benchmarks/stats.py
	$(BIN)/python benchmarks/detection.py
	$(BIN)/python benchmarks/classification.py
	$(BIN)/python benchmarks/jobs.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache build *.egg-info
