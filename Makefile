# Every target installs what it needs first, so each works on a fresh Debian machine (as root).
PYTHON ?= python3
PIP := $(PYTHON) -m pip --disable-pip-version-check -q

.PHONY: install install-test prometheus alertmanager chromium demo test lint schema

# The controller, the report's charts and the sandbox (the demo): what a checkout is used for.
# `pip install ptc` alone is the controller and its CLI (the image installs only that).
install:
	$(PIP) install -e '.[report,sandbox]'

install-test: prometheus alertmanager chromium
	$(PIP) install -e '.[report,sandbox,test]'
	# helm-sdkpy (the real Helm v4 library, chart tests) declares Python >= 3.12 but works
	# on 3.11: its own pip call.
	$(PIP) install --ignore-requires-python helm-sdkpy==0.1.32

# The real Prometheus server the analysis and scraping tests start (Debian package).
prometheus:
	@command -v prometheus >/dev/null 2>&1 || { \
	  apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus; }

# The real Alertmanager the alert-driven rollback tests start (Debian package; the binary is
# called prometheus-alertmanager there).
alertmanager:
	@command -v prometheus-alertmanager >/dev/null 2>&1 || { \
	  apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus-alertmanager; }

# Headless Chromium for the report's browser check (Debian package).
chromium:
	@command -v chromium >/dev/null 2>&1 || { \
	  apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium; }

demo: install prometheus
	ptc demo

test: install-test
	$(PYTHON) -m pytest

lint: install-test
	ruff check .
	ruff format --check .
	mypy --strict controller
	lint-imports

# Regenerate config/schema.json from the config model.
schema: install
	ptc schema > config/schema.json
	ptc schema --markdown > docs/config-reference.md
	$(PYTHON) helm/ptc/generate_schema.py
