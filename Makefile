SHELL := /bin/bash
PYTHON_VERSION ?= 3.13.0
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
WEB_STAMP := web/node_modules/.installed
CHROMIUM := /usr/bin/chromium
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: venv test unit integration e2e infra lint fmt demo local bench soak build schema clean

# The venv is Python 3.13 (pyenv), so `sam build` for python3.13 works without a container.
$(STAMP): requirements-dev.txt layers/herald/requirements.txt $(wildcard functions/*/requirements.txt) pyproject.toml
	@if [ ! -x $(PY) ]; then \
	  if command -v pyenv >/dev/null 2>&1 && pyenv versions --bare | grep -qx '$(PYTHON_VERSION)'; then \
	    PYENV_VERSION=$(PYTHON_VERSION) pyenv exec python -m venv $(VENV); \
	  elif command -v python3.13 >/dev/null 2>&1; then python3.13 -m venv $(VENV); \
	  else echo "Python 3.13 is required (pyenv install 3.13.0)" >&2; exit 1; fi; \
	fi
	$(PY) -m pip install -q --upgrade pip 2>/dev/null || true
	$(PY) -m pip install -q -r requirements-dev.txt $(foreach f,$(wildcard functions/*/requirements.txt),-r $(f))
	# The operator CLI (`herald trace ...`, `herald redrive ...`) as a console script; its dependencies are pinned above.
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .
	touch $(STAMP)

venv: $(STAMP)

# pusher-js (the demo app page, the browser tests), exactly as web/package-lock.json pins it.
$(WEB_STAMP): web/package.json web/package-lock.json
	cd web && npm ci --no-audit --no-fund --loglevel=error
	touch $(WEB_STAMP)

# The browser tests drive Debian's chromium (Playwright cannot download its own browsers here).
$(CHROMIUM):
	$(SUDO) apt-get update -qq
	$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

fmt: venv
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

# Full suite: lint, unit, integration, infrastructure checks, end-to-end, the browser test (it
# needs chromium and pusher-js: installed above when missing). Exit 5 (no tests) fails.
# Two workers (pytest-xdist), a whole file per worker: the end-to-end modules mostly wait on timers
# (quiet hours, digests, escalation delays), and each keeps its module-scoped stack to itself.
test: venv $(WEB_STAMP) $(CHROMIUM)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	PATH=$(CURDIR)/$(VENV)/bin:$$PATH $(PY) -m pytest -n 2 --dist loadfile

unit: venv
	$(PY) -m pytest -m unit

integration: venv
	$(PY) -m pytest -m integration

infra: venv
	PATH=$(CURDIR)/$(VENV)/bin:$$PATH $(PY) -m pytest -m infra

e2e: venv
	$(PY) -m pytest -m e2e

schema: venv
	PYTHONPATH=layers/herald $(PY) -m herald.schema
	PYTHONPATH=layers/herald $(PY) -m herald.api.resolver schemas/openapi.json

build: venv
	PATH=$(CURDIR)/$(VENV)/bin:$$PATH $(VENV)/bin/sam build --parallel --cached

demo: venv
	PYTHONPATH=.:layers/herald $(PY) -m local.demo

local: venv $(WEB_STAMP)
	PYTHONPATH=.:layers/herald $(PY) -m local.stack

bench: venv
	PYTHONPATH=.:layers/herald $(PY) -m local.bench

# The reliability suite at full size (burst of 5,000, duplicate storm, outages, poison): docs/reliability.md
soak: venv
	PYTHONPATH=.:layers/herald $(PY) -m local.soak

clean:
	rm -rf .aws-sam .local .pytest_cache .ruff_cache
