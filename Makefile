# Two commands for a newcomer: `make run` (the whole stack, in the foreground)
# and `make test` (the whole suite).  Both create or refresh .venv themselves
# and install the Debian packages they need when run as root.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
PYTEST_ARGS ?=
# axe-core, for the portal's automated accessibility audit (tests/portal/test_accessibility.py).
AXE    := .cache/axe/node_modules/axe-core/axe.min.js

.PHONY: run test bench lint debian-packages clean

$(STAMP): setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test,dev]'
	touch $(STAMP)

debian-packages:
	@bash infra/install-debian-packages.sh

$(AXE):
	npm install --silent --no-save --no-audit --no-fund --prefix .cache/axe axe-core@4.14.1

run: debian-packages $(STAMP)
	$(PY) -m infra.localstack.run

test: debian-packages $(STAMP) $(AXE)
	$(PY) -m pytest $(PYTEST_ARGS)

bench: debian-packages $(STAMP)
	$(PY) -m bench

lint: $(STAMP)
	$(VENV)/bin/ruff check gateway tests infra bench

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .cache
