# Two commands for a newcomer: `make run` (the whole stack, in the foreground)
# and `make test` (the whole suite).  Both create or refresh .venv themselves,
# from the locked versions in requirements/, and install the Debian packages
# they need when run as root.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
PYTEST_ARGS ?=
# axe-core, for the portal's automated accessibility audit (tests/portal/test_accessibility.py).
AXE    := .cache/axe/node_modules/axe-core/axe.min.js
# panva's oidc-provider: the real OpenID Connect server the hospital sign-on tests start (tests/fixtures/oidc_provider).
OIDC_PROVIDER := .cache/oidc-provider/node_modules/oidc-provider/package.json
# Between them, these two zones put the machine's date apart from Massachusetts' at every hour of the day.
FAR_ZONES := Pacific/Kiritimati Pacific/Pago_Pago
PIP_COMPILE := $(VENV)/bin/pip-compile --quiet --strip-extras --no-emit-index-url --no-emit-find-links

.PHONY: run test test-fast test-dates bench screenshots lint lock audit debian-packages validate-deploy clean

$(STAMP): setup.cfg pyproject.toml requirements/dev.lock
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements/dev.lock
	$(PY) -m pip install --quiet --no-deps -e .
	touch $(STAMP)

debian-packages:
	@bash infra/install-debian-packages.sh

$(AXE):
	npm install --silent --no-save --no-audit --no-fund --prefix .cache/axe axe-core@4.14.1

$(OIDC_PROVIDER):
	npm install --silent --no-save --no-audit --no-fund --prefix .cache/oidc-provider oidc-provider@9.13.3

run: debian-packages $(STAMP)
	$(PY) -m infra.localstack.run

test: debian-packages $(STAMP) $(AXE) $(OIDC_PROVIDER)
	$(PY) -m pytest --durations=15 $(PYTEST_ARGS)

# The unit tier: service logic with fakes, no service started (tests/conftest.py marks the tiers).
test-fast: $(STAMP)
	$(PY) -m pytest -q -m unit $(PYTEST_ARGS)

# The date-sensitive tests again, with the machine in each far time zone (the rules judge Boston's date).
test-dates: debian-packages $(STAMP) $(AXE) $(OIDC_PROVIDER)
	@for zone in $(FAR_ZONES); do \
		echo "== TZ=$$zone"; \
		TZ=$$zone $(PY) -m pytest -q -m date_sensitive $(PYTEST_ARGS) || exit 1; \
	done

bench: debian-packages $(STAMP)
	$(PY) -m bench --profile short

# Refresh the README's portal pictures on purpose (test runs write theirs under var/, which is ignored).
screenshots: debian-packages $(STAMP)
	GATEWAY_SCREENSHOTS_DIR=$(CURDIR)/docs/portal-screenshots $(PY) -m pytest -q tests/portal/test_browser.py -k sqlite

lint: $(STAMP)
	$(VENV)/bin/ruff check gateway tests infra bench

# The Dockerfile, docker-compose.yml, infra/k8s and infra/grafana checked as far as this machine allows
# (no container engine): hadolint, the compose-spec schema and `docker-compose config`, Kubernetes' schemas,
# and the project's own checks (infra/validate_deploy.py says which).
validate-deploy: debian-packages $(STAMP)
	$(PY) -m infra.validate_deploy

# Re-resolve requirements/*.lock from setup.cfg (the development lock is held to the runtime one).
lock: $(STAMP)
	$(PIP_COMPILE) --upgrade --output-file requirements/runtime.lock setup.cfg
	$(PIP_COMPILE) --upgrade --extra test --extra dev --constraint requirements/runtime.lock \
		--output-file requirements/dev.lock setup.cfg

# Known advisories in the locked versions (needs the advisory service; not part of `make test`).
audit: $(STAMP)
	$(VENV)/bin/pip-audit --no-deps --disable-pip --requirement requirements/runtime.lock
	$(VENV)/bin/pip-audit --no-deps --disable-pip --requirement requirements/dev.lock

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .cache var/test-artifacts
