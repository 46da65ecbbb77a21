# collectrl: the two set-up commands of the README.
#   make demo   creates .venv, installs torch==2.13.0 (the local CPU build) first, then the project,
#               then simulates the default portfolio under the baseline policies.
#   make test   the same set-up, then the whole test suite.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
TORCH_PIN := torch==2.13.0

.PHONY: demo test lint setup clean perf

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH_PIN)
	$(PY) -m pip install -q -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/collectrl demo

test: $(STAMP)
	$(PY) -m pytest -n 2 -q

CODE := sim policies agents experiments tests

lint: $(STAMP)
	$(VENV)/bin/ruff check $(CODE)
	$(VENV)/bin/ruff format --check $(CODE)
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

perf: $(STAMP)
	$(VENV)/bin/collectrl perf sim --json
	$(VENV)/bin/collectrl perf env --json

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache *.egg-info
