# Everything runs from a virtual environment this Makefile creates: nothing to install by hand.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
# Arize Phoenix, the real OTLP backend the session-grouping tests run against: a large program
# with dependencies of its own, so it lives in a virtual environment of its own.
PHOENIX_VENV  ?= .venv-phoenix
PHOENIX_STAMP := $(PHOENIX_VENV)/.installed-stamp
# Older releases of the openai and anthropic SDKs, which send through httpx (the current ones use
# httpx2): the capture of provider calls is tested with both, and they cannot share a venv.
LEGACY_VENV   ?= .venv-legacy-sdks
LEGACY_STAMP  := $(LEGACY_VENV)/.installed-stamp
# The benchmarks, with the peers they measure beside ours (not in the test venv: an instrumentor
# installed there would join every opentelemetry-instrument test).
BENCH_VENV    ?= .venv-bench
BENCH_STAMP   := $(BENCH_VENV)/.installed-stamp

# The browser the dashboard's tests drive (Playwright launches it by its path): Debian's package,
# installed when missing and when this runs as root, as CI does (a browser download cannot work).
CHROMIUM ?= $(shell command -v chromium || command -v chromium-browser)

.PHONY: test lint docs demo dashboard bench install phoenix legacy-sdks chromium clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[all,test,docs]'
	touch $(STAMP)

$(PHOENIX_STAMP):
	python3 -m venv $(PHOENIX_VENV)
	$(PHOENIX_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(PHOENIX_VENV)/bin/python -m pip install --quiet 'arize-phoenix==20.26.1'
	touch $(PHOENIX_STAMP)

$(LEGACY_STAMP): pyproject.toml
	python3 -m venv $(LEGACY_VENV)
	$(LEGACY_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(LEGACY_VENV)/bin/python -m pip install --quiet -e '.[server]' 'openai==2.54.0' 'anthropic==0.125.0' 'pytest>=8.3'
	touch $(LEGACY_STAMP)

$(BENCH_STAMP): pyproject.toml
	$(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(BENCH_VENV)/bin/python -m pip install --quiet -e '.[all,test,bench]'
	touch $(BENCH_STAMP)

install: $(STAMP)

legacy-sdks: $(LEGACY_STAMP)

phoenix: $(PHOENIX_STAMP)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

chromium:
	@if [ -z "$(CHROMIUM)" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) >/dev/null; \
	  else \
	    echo "the dashboard's browser tests need Chromium: sudo apt-get install chromium" >&2; exit 1; \
	  fi; \
	fi

# The documentation site, in build/site; strict: a broken link or a docstring reference that no
# longer exists is an error.
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet

test: lint docs $(PHOENIX_STAMP) $(LEGACY_STAMP) chromium
	PHOENIX=$(PHOENIX_VENV)/bin/phoenix LEGACY_SDKS_PYTHON=$(LEGACY_VENV)/bin/python REQUIRE_BROWSER=1 $(BIN)/pytest

bench: $(BENCH_STAMP)
	$(BENCH_VENV)/bin/python -m bench.run_all

demo: $(STAMP)
	$(BIN)/python examples/demo.py

dashboard: $(STAMP)
	$(BIN)/python examples/demo.py --keep-serving

clean:
	rm -rf $(VENV) $(PHOENIX_VENV) $(LEGACY_VENV) $(BENCH_VENV) .mypy_cache .ruff_cache .pytest_cache
