# Every target bootstraps .venv on first use, so a fresh clone needs only python3 and make.
VENV := .venv
# The interpreter the venv is made with. Debian's own python3 is built with profile-guided and
# link-time optimisation into one static executable; pyenv's default build (the python3 first on
# PATH on this project's machines) has neither, and the same code served ~20% fewer requests a
# second on it (benchmarks/README.md, "The interpreter"). So the system's python3 comes first when
# it is 3.11 or newer and can make a venv with pip; `make PYTHON=...` chooses another.
SYSTEM_PYTHON := $(shell /usr/bin/python3 -c 'import sys, ensurepip; ensurepip.version(); \
  sys.exit(sys.version_info < (3, 11))' >/dev/null 2>&1 && echo /usr/bin/python3)
PYTHON ?= $(or $(SYSTEM_PYTHON),python3)
# a venv made with another interpreter than the one chosen is made again
PYTHON_EXE := $(shell $(PYTHON) -c 'import os, sys; print(os.path.realpath(sys.executable))' 2>/dev/null)
VENV_EXE := $(realpath $(shell sed -n 's/^executable = //p' $(VENV)/pyvenv.cfg 2>/dev/null))
REMAKE := $(if $(VENV_EXE),$(if $(filter $(PYTHON_EXE),$(VENV_EXE)),,remake-venv))
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
HOST ?= 127.0.0.1
PORT ?= 4010
# whoever runs `make test`: only root may install chromium (overridable to test this Makefile)
USER_ID ?= $(shell id -u)

TOOLS := .tools
TOOLS_STAMP := $(TOOLS)/.installed

.PHONY: serve test lint bench bytecode native browser-deps redis-deps client-tools clean remake-venv

$(STAMP): pyproject.toml $(REMAKE)
	$(if $(REMAKE),rm -rf $(VENV))
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

# The package's compiled bytecode, as an installed package has it (pip compiles a wheel's modules;
# the editable install here does not). Where PYTHONDONTWRITEBYTECODE is set, as on this project's
# machines and in the image, every start compiled ~120 modules again: ~0.25 s of a 1.5 s ready
# time (benchmarks/README.md, "Ready time"). Only what changed since is compiled again; Python
# ignores a .pyc whose source is newer, so a stale one costs nothing but the compile it saves.
bytecode: $(STAMP)
	@$(BIN)/python -m compileall -q sandbox contracts

# The request path's modules compiled by mypyc into sandbox/_native (sandbox/native.py says which,
# and why: a create costs about a quarter less time). Built again only when a source of the
# package changed since; a build older than its sources is never used. It needs a C compiler and
# Python's headers: Debian's gcc and python3-dev, installed when missing by root. Anyone else
# without them is told so, and the sandbox runs those modules interpreted (`serve` says which).
CAN_COMPILE = $(BIN)/python -c 'import os, shutil, sys, sysconfig; sys.exit(not (shutil.which("cc") \
  and os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h"))))'
native: $(STAMP)
	@$(CAN_COMPILE) || [ "$(USER_ID)" != 0 ] || ! command -v apt-get >/dev/null 2>&1 || { \
	  echo "installing Debian's gcc and python3-dev to compile the request path"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq gcc python3-dev >/dev/null; }
	@if $(CAN_COMPILE); then \
	  $(BIN)/python -c 'from opsmerge_sandbox.native import main; main()' build --if-stale; \
	else \
	  echo "make: no C compiler or Python headers (sudo apt-get install gcc python3-dev): the" >&2; \
	  echo "request path runs interpreted, about a quarter slower" >&2; \
	fi

# `make serve ADMIN_TOKEN=...` fixes the control API's token. It reaches the command through the
# environment, so it is neither echoed here nor visible in the process list.
ifdef ADMIN_TOKEN
serve: export OPSMERGE_SANDBOX_ADMIN_TOKEN = $(ADMIN_TOKEN)
endif
serve: $(STAMP) bytecode native
	$(BIN)/opsmerge-sandbox serve --host $(HOST) --port $(PORT)

# Chromium for the docs-page test comes from Debian; installed only when missing, and only by
# root (as CI runs). Anyone else is told what to install and the run stops: the docs-page test
# cannot pass without a browser, and a run that skipped it would not be the project's tests.
browser-deps:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$(USER_ID)" != 0 ]; then \
	    echo "make test: chromium is missing and only root can install it; the docs-page browser" >&2; \
	    echo "test (tests/test_docs_browser.py) needs it. Install it, then run make test again:" >&2; \
	    echo "    sudo apt-get install chromium" >&2; \
	    echo "(or run the other tests without it:" >&2; \
	    echo "    $(BIN)/python -m pytest -q --ignore tests/test_docs_browser.py)" >&2; \
	    exit 1; \
	  fi; \
	  echo "installing Debian's chromium for the docs-page browser test"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

# redis-server for the shared-state tests (tests/test_shared_state_*.py start real ones on free
# loopback ports) and for `make bench`'s shared-state run: Debian's package, installed only when
# missing and only by root, as chromium is; anyone else is told what to install.
redis-deps:
	@command -v redis-server >/dev/null 2>&1 || { \
	  if [ "$(USER_ID)" != 0 ]; then \
	    echo "make test: redis-server is missing and only root can install it; the shared-state" >&2; \
	    echo "tests (tests/test_shared_state_*.py) need it. Install it, then run make test again:" >&2; \
	    echo "    sudo apt-get install redis-server" >&2; \
	    exit 1; \
	  fi; \
	  echo "installing Debian's redis-server for the shared-state tests"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null; }

# The tools integrators feed the served spec to, for tests/test_client_tools_*.py: openapi-python-client
# (PyPI, in a virtualenv of its own) and openapi-typescript, typescript, openapi-to-postmanv2 and
# newman (npm), pinned in tests/client-tools/ and installed once into .tools/. npm comes from Debian
# when missing, as chromium does: root installs it, anyone else is told how and the run stops.
$(TOOLS_STAMP): tests/client-tools/requirements.txt tests/client-tools/package.json tests/client-tools/package-lock.json
	@command -v npm >/dev/null 2>&1 || { \
	  if [ "$(USER_ID)" != 0 ]; then \
	    echo "make test: npm is missing and only root can install it; the client-tool tests" >&2; \
	    echo "(tests/test_client_tools_*.py) need it. Install it, then run make test again:" >&2; \
	    echo "    sudo apt-get install nodejs npm" >&2; \
	    exit 1; \
	  fi; \
	  echo "installing Debian's nodejs and npm for the client-tool tests"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null; }
	rm -rf $(TOOLS)/python $(TOOLS)/npm
	$(PYTHON) -m venv $(TOOLS)/python
	$(TOOLS)/python/bin/pip install --quiet -r tests/client-tools/requirements.txt
	mkdir -p $(TOOLS)/npm
	cp tests/client-tools/package.json tests/client-tools/package-lock.json $(TOOLS)/npm/
	cd $(TOOLS)/npm && npm ci --no-audit --no-fund --loglevel=error
	touch $@

client-tools: $(TOOLS_STAMP)

# One test process per core (at most 4), a file's tests kept together so its servers start once, on
# the compiled modules; then the tests marked `interpreted` (they replace functions the compiled
# modules call directly) with those modules off;
# then the tests marked `alone` (worker processes racing on Redis, timeouts) with nothing beside them
test: $(STAMP) bytecode native browser-deps redis-deps client-tools lint
	$(BIN)/python -m pytest -q -n auto --maxprocesses 4 --dist loadfile -m "not alone"
	OPSMERGE_SANDBOX_NATIVE=0 $(BIN)/python -m pytest -q -m "interpreted and not alone"
	$(BIN)/python -m pytest -q -m alone

# ruff for style, mypy for the type hints (its settings are in pyproject.toml)
lint: $(STAMP)
	$(BIN)/ruff check sandbox contracts tests benchmarks
	$(BIN)/mypy

# granian serves the floors and the sandbox beside uvicorn, so the run chooses the server by
# measurement; it is only the benchmark's (the `bench` extra), installed on the first run.
bench: $(STAMP) bytecode native redis-deps
	@$(BIN)/python -c "import granian" 2>/dev/null || $(BIN)/pip install --quiet -e '.[bench]'
	$(BIN)/python benchmarks/run.py

clean:
	rm -rf $(VENV) $(TOOLS) build dist *.egg-info .bench test-output sandbox/_native
