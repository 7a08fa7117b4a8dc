# Two commands matter: `make run` and `make test`. Both install first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PYPROJECTS := pyproject.toml $(wildcard libs/*/pyproject.toml services/*/pyproject.toml tools/*/pyproject.toml)

.PHONY: install run test test-unit test-integration lint format lock clean bench

install: $(STAMP)

# Idempotent: re-runs only when the lock or a package definition changes.
$(STAMP): requirements.lock $(PYPROJECTS)
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11+ is required")'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade 'pip>=24'
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements.lock
	touch $@

run: install
	CHAT_AUTH=$${CHAT_AUTH:-dev} $(BIN)/chat up

test: install
	$(BIN)/python -m pytest -q

test-unit: install
	$(BIN)/python -m pytest -q -m "not integration and not system"

test-integration: install
	$(BIN)/python -m pytest -q -m "integration or system"

# Speed is measured by benchmarks, each against a baseline from the same run.
bench: install
	$(BIN)/python -m benchmarks.encode
	$(BIN)/python -m benchmarks.fanout
	$(BIN)/python -m benchmarks.history
	$(BIN)/python -m benchmarks.jetstream
	$(BIN)/python -m benchmarks.peers

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy libs/*/src services/*/src tools/*/src

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# Regenerate the pinned lock from requirements.in (needs the dev venv, which carries uv).
lock: install
	$(BIN)/uv pip compile requirements.in --python-version 3.11 --no-header --no-annotate -o requirements.lock

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
