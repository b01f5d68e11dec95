# The two commands: `make demo` (the local demo on real daemons) and `make test` (the suite).
# Both install what they need: Debian packages (scripts/setup-debian.sh) and a venv in .venv.
VENV ?= .venv
PYTHON ?= python3
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=
DEMO_ARGS ?=

.PHONY: setup demo test lint unit clean

setup: $(STAMP)

$(STAMP): pyproject.toml lab/pyproject.toml scripts/setup-debian.sh
	bash scripts/setup-debian.sh
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e '.[dev]' -e ./lab
	touch $(STAMP)

demo: setup
	$(VENV)/bin/zcp-obs --log-format text demo $(DEMO_ARGS)

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

test: lint
	$(VENV)/bin/pytest $(PYTEST_ARGS)

unit: setup
	$(VENV)/bin/pytest -m "not integration" $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache *.egg-info
