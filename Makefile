# The README's two commands: `make demo` and `make test`. Everything else is a building block.
SHELL := /bin/bash
PYTHON_VERSION ?= 3.11
VENV := .venv
PY := $(VENV)/bin/python
# Evaluated when used (after the bootstrap below may have installed it): uv on PATH, else pip's copy.
UV = $(shell command -v uv 2>/dev/null || echo python3 -m uv)
export AIRFLOW_HOME ?= $(CURDIR)/.airflow
export AIRFLOW__CORE__LOAD_EXAMPLES := False
export AIRFLOW__CORE__UNIT_TEST_MODE := False

.PHONY: install lint types unit integration e2e test demo bench clean

.PHONY: uv
uv: ## bootstrap uv when it is missing
	@command -v uv >/dev/null 2>&1 || python3 -m uv --version >/dev/null 2>&1 || python3 -m pip install --quiet uv

$(VENV)/.installed: pyproject.toml | uv
	$(UV) venv --quiet --allow-existing --python $(PYTHON_VERSION) $(VENV)
	$(UV) pip install --quiet --python $(PY) -e ".[dev]"
	touch $@

install: $(VENV)/.installed ## create .venv and install the package with its dev extra

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

types: install
	$(VENV)/bin/mypy --strict airflow_provider_venice

unit: install
	$(PY) -m pytest tests/unit -q

integration: install
	$(PY) -m pytest tests/integration -q -m integration

e2e: install
	$(PY) -m pytest tests/e2e -q -m e2e

test: lint types ## every check: lint, types, unit, integration, e2e
	$(PY) -m pytest -q

demo: install ## run the text-to-video example DAG end to end (emulator + local S3, or the real services)
	$(PY) demo/run_demo.py

bench: install ## every benchmark (about 10 minutes); writes BENCHMARKS.md
	$(PY) bench/run_all.py

clean:
	rm -rf $(VENV) .airflow .demo .pytest_cache .mypy_cache .ruff_cache
