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

.PHONY: install lint types unit integration e2e scale test demo bench clean system-packages

.PHONY: uv
uv: ## bootstrap uv when it is missing
	@command -v uv >/dev/null 2>&1 || python3 -m uv --version >/dev/null 2>&1 || python3 -m pip install --quiet uv

# From uv.lock, exactly (packages the lock does not list are removed); the package itself is editable.
# --locked refuses a lock that is out of date with pyproject.toml instead of re-resolving.
$(VENV)/.installed: pyproject.toml uv.lock | uv
	UV_PROJECT_ENVIRONMENT=$(VENV) $(UV) sync --quiet --locked --extra dev --python $(PYTHON_VERSION) || { \
	  echo "make install: could not install from uv.lock. If pyproject.toml changed, run 'uv lock' and commit uv.lock." >&2; \
	  exit 1; }
	touch $@

# Debian packages the scale and browser tests drive: redis-server (the Celery broker) and chromium (the
# headless browser test of the Venice page). Installed only when missing; the tests that need one skip,
# naming it, where it cannot be installed (not root, no apt-get).
SYSTEM_PACKAGES := redis-server:redis-server chromium:chromium
system-packages:
	@missing=""; for pair in $(SYSTEM_PACKAGES); do command -v "$${pair%%:*}" >/dev/null 2>&1 || missing="$$missing $${pair##*:}"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing$$missing"; apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	  else echo "not installed (the tests that need them will skip):$$missing" >&2; fi; \
	fi

install: $(VENV)/.installed ## create .venv and install the locked dev environment (uv.lock) and the package

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

types: install
	$(VENV)/bin/mypy --strict airflow_provider_venice

unit: install
	$(PY) -m pytest tests/unit -q

integration: install
	$(PY) -m pytest tests/integration -q -m integration

e2e: install system-packages
	$(PY) -m pytest tests/e2e -q -m e2e

scale: install system-packages ## CeleryExecutor, PostgreSQL, Redis and two triggerers, with faults
	$(PY) -m pytest tests/scale -q -m scale

test: lint types system-packages ## every check: lint, types, unit, integration, e2e, scale
	$(PY) -m pytest -q

demo: install ## run the text-to-video example DAG end to end (emulator + local S3, or the real services)
	$(PY) demo/run_demo.py

bench: install system-packages ## every benchmark (about 45 minutes: the real triggerer and the 500-video batch take most); writes BENCHMARKS.md
	$(PY) bench/run_all.py

# twine pinned: reproducible, and `uv tool run` serves it from uv's cache once it has been fetched.
TWINE_VERSION := 7.0.0

.PHONY: dist
dist: install ## build the wheel and sdist into dist/, check their metadata, test the wheel in a clean virtualenv
	rm -rf dist
	$(UV) build --quiet --out-dir dist
	$(UV) tool run --quiet --from twine==$(TWINE_VERSION) twine check --strict dist/*
	VENICE_WHEEL="$$(echo dist/*.whl)" $(PY) -m pytest tests/dist -q -m dist

# Each supported Airflow (3.1, 3.2, 3.3) and Python (3.11 to 3.13) in its own virtualenv under .venvs/,
# re-installed only when pyproject.toml (or uv.lock) changed; see scripts/matrix.py for the cells.
.PHONY: matrix
matrix: | uv ## unit and DAG tests on Airflow 3.1, 3.2 and 3.3, unit tests on Python 3.12 and 3.13
	UV="$(UV)" python3 scripts/matrix.py $(MATRIX_ARGS)

clean:
	rm -rf $(VENV) .airflow .demo .pytest_cache .mypy_cache .ruff_cache dist
