# raytrade — the Makefile is the interface. `make demo` and `make test` set everything up
# themselves on a fresh machine (Python 3.10+ with venv; no GPU, no network beyond PyPI).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
STORE  ?= store
export OMP_NUM_THREADS ?= 1
export RAY_USAGE_STATS_ENABLED ?= 0

.PHONY: install chromium xvfb demo test unit integration lint bench sample clean help

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

install: $(STAMP)  ## create .venv; CPU torch 2.13.0 first (no CUDA wheels), then raytrade[dev]

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $(STAMP)

# Debian chromium renders the backtest report in tests/integration/test_report_chromium.py.
# Idempotent; never fatal: without apt-get (or root, or the network) that test skips.
chromium:  ## install Debian chromium (headless browser for the report test) if missing
	@test -x /usr/bin/chromium || { command -v apt-get >/dev/null 2>&1 \
	  && echo "installing Debian chromium (apt-get) for the report's browser test" \
	  && apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } \
	  || echo "make chromium: could not install chromium (no apt-get, not root, or offline): the report's browser test will skip"

# Xvfb + xdotool play the game in a real X window in tests/integration/test_game_xvfb.py (TkAgg;
# python3-tk too when the venv's Python cannot import tkinter). Idempotent; never fatal: without
# apt-get (or root, or the network) that test skips.
xvfb:  ## install Xvfb and xdotool (the game's X screenshot test) if missing
	@pkgs=""; command -v Xvfb >/dev/null 2>&1 && command -v xvfb-run >/dev/null 2>&1 || pkgs="xvfb"; \
	  command -v xdotool >/dev/null 2>&1 || pkgs="$$pkgs xdotool"; \
	  $(BIN)/python -c 'import tkinter' >/dev/null 2>&1 || pkgs="$$pkgs python3-tk"; \
	  test -z "$$pkgs" || { command -v apt-get >/dev/null 2>&1 \
	  && echo "installing$$pkgs (apt-get) for the game's Xvfb test" \
	  && apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$pkgs >/dev/null; } \
	  || echo "make xvfb: could not install$$pkgs (no apt-get, not root, or offline): the game's Xvfb test will skip"

demo: install  ## run the pipeline on the embedded sample (offline)
	$(BIN)/raytrade demo --store $(STORE)

test: install lint chromium xvfb  ## lint + import contracts + all tests (unit, then Ray integration)
	$(BIN)/python -m pytest tests

unit: install  ## fast offline unit tests only (no Ray)
	$(BIN)/python -m pytest tests/unit -q

integration: install chromium xvfb  ## Ray integration tests (one shared local Ray)
	$(BIN)/python -m pytest tests/integration -q

lint: install  ## ruff + import-linter contracts (layers, no cycles, envs is a leaf, vendors at the edges) + mypy
	$(BIN)/ruff check app envs serve tests benchmarks scripts
	$(BIN)/lint-imports
	$(BIN)/mypy

bench: install  ## benchmarks against the peers named in the issues (prints ratios)
	$(BIN)/python -m pip install -q -e ".[bench]"
	$(BIN)/python benchmarks/run_all.py

sample:  ## rebuild data/sample/ from ../shared/data (maintainers only)
	$(BIN)/python scripts/build_sample.py --shared ../shared/data --out data/sample

clean:  ## remove the local store and caches (keeps .venv)
	rm -rf $(STORE) .pytest_cache .ruff_cache
