# Usage:
#   make demo | test | lint | docs | dist | clean
#   make demo DEMO_ARGS="-o trace-dir"             keep the demo's trace files there
#   make test PYTEST_ARGS="--cov=asyncfork"      extra pytest arguments
#   make test PYTHON=python3.13 VENV=.venv313    another interpreter, separate venv
PYTHON ?= python3
VENV ?= .venv
PYTEST_ARGS ?=
BENCH_ARGS ?=
DEMO_ARGS ?=
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

SHELL := bash
.SHELLFLAGS := -euo pipefail -c
.DELETE_ON_ERROR:
.DEFAULT_GOAL := test
.PHONY: demo test lint docs dist clean browser bench

VPY := $(VENV)/bin/python

# The venv itself. Fails loudly on a Python < 3.11 or a broken venv/ensurepip.
$(VENV)/.venv-ok:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "asyncfork needs Python >= 3.11, $(PYTHON) is " + sys.version)'
	rm -rf $(VENV)
	$(PYTHON) -m venv $(VENV) || { rm -rf $(VENV); echo "error: '$(PYTHON) -m venv $(VENV)' failed" >&2; exit 1; }
	$(VPY) -m pip --version
	touch $@

# One stamp per set of extras; re-installs only when pyproject.toml changes.
# The demo needs the package and its runtime dependencies only (attrs, uvloop): a few seconds.
$(VENV)/.stamp-run: pyproject.toml $(VENV)/.venv-ok
	$(VPY) -m pip install -q -e .
	touch $@

$(VENV)/.stamp-test: pyproject.toml $(VENV)/.venv-ok
	$(VPY) -m pip install -q -e '.[test]'
	touch $@

$(VENV)/.stamp-lint: pyproject.toml $(VENV)/.venv-ok
	$(VPY) -m pip install -q -e '.[test,dev]'
	touch $@

$(VENV)/.stamp-docs: pyproject.toml $(VENV)/.venv-ok
	$(VPY) -m pip install -q -e '.[docs]'
	touch $@

$(VENV)/.stamp-bench: pyproject.toml $(VENV)/.venv-ok
	$(VPY) -m pip install -q -e '.[bench]'
	touch $@

# The benchmark runner (peers from the bench extra); BENCH_ARGS="--quick" for a smoke run.
bench: $(VENV)/.stamp-bench
	$(VPY) -m benchmarks $(BENCH_ARGS)

demo: $(VENV)/.stamp-run
	$(VPY) -m asyncfork demo $(DEMO_ARGS)

# The docs site (Sphinx, furo, MyST) into build/docs/html, from scratch (-E: no page's
# warnings hidden by a cache), offline. Warnings are errors: a broken cross-reference, a
# relative link to a missing page or heading, or a public name left out of the API reference.
docs: $(VENV)/.stamp-docs
	$(VPY) -m sphinx -b html -E -W --keep-going -q docs build/docs/html
	@echo "docs: open build/docs/html/index.html"

# The wheel and the sdist into dist/, checked as an index would check them.
dist: $(VENV)/.stamp-lint
	rm -rf dist
	$(VPY) -m build --outdir dist .
	$(VENV)/bin/twine check --strict dist/*

# The HTML trace view is tested in a real browser: Debian's Chromium (no browser download).
# Installed here when missing, so that `make test` sets up everything it needs.
browser:
	@if /usr/bin/chromium --version >/dev/null 2>&1; then /usr/bin/chromium --version; \
	elif command -v apt-get >/dev/null 2>&1; then \
		echo "installing Debian's chromium for the browser tests"; \
		$(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends chromium && \
		/usr/bin/chromium --version; \
	else echo "error: the browser tests need Chromium at /usr/bin/chromium (apt-get install chromium)" >&2; exit 1; fi

# Any pytest failure exits non-zero, including exit code 5 (no tests collected).
test: $(VENV)/.stamp-test browser
	$(VPY) -m pytest -n 2 -q --timeout=60 $(PYTEST_ARGS)

lint: $(VENV)/.stamp-lint
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports
	@# The HTML trace view's script (package data): ESLint from the npm registry.
	npx --yes eslint@9 --max-warnings 0 asyncfork/_tracing/view/trace.js
	$(VENV)/bin/mypy --strict asyncfork tests/typing
	$(VENV)/bin/pyright --pythonpath $(VPY)

clean:
	rm -rf .venv .venv312 .venv313 build dist *.egg-info .coverage .coverage.* htmlcov \
		.mypy_cache .ruff_cache .pytest_cache
