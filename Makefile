# Everything runs from a virtual environment this Makefile creates: nothing to install by hand.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
# Arize Phoenix, the real OTLP backend the session-grouping tests run against: a large program
# with dependencies of its own, so it lives in a virtual environment of its own.
PHOENIX_VENV  ?= .venv-phoenix
PHOENIX_STAMP := $(PHOENIX_VENV)/.installed-stamp

.PHONY: test lint demo bench install phoenix clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[all,test]'
	touch $(STAMP)

$(PHOENIX_STAMP):
	python3 -m venv $(PHOENIX_VENV)
	$(PHOENIX_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(PHOENIX_VENV)/bin/python -m pip install --quiet 'arize-phoenix==20.26.1'
	touch $(PHOENIX_STAMP)

install: $(STAMP)

phoenix: $(PHOENIX_STAMP)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: lint $(PHOENIX_STAMP)
	PHOENIX=$(PHOENIX_VENV)/bin/phoenix $(BIN)/pytest

bench: $(STAMP)
	$(BIN)/python -m bench.run_all

demo: $(STAMP)
	$(BIN)/python examples/demo.py

clean:
	rm -rf $(VENV) $(PHOENIX_VENV) .mypy_cache .ruff_cache .pytest_cache
