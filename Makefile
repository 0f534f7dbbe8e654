# `make test` and `make bench` set everything up on a fresh machine.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: test bench check clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

$(VENV)/.bench: $(STAMP)
	$(PY) -m pip install --quiet -e '.[test,bench]'
	touch $(VENV)/.bench

test: $(STAMP)
	$(PY) -m pytest

bench: $(VENV)/.bench
	$(PY) benchmarks/rules.py
	$(PY) benchmarks/codec.py
	$(PY) benchmarks/store.py
	$(PY) benchmarks/decide.py

# check the bundled example catalog
check: $(STAMP)
	$(VENV)/bin/offerd check examples/catalog

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache .hypothesis
