# Two commands matter: `make run` (set up and start everything) and `make test` (set up and test).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export SNAPMATCH_VAR_DIR ?= ./var
# Worker processes for `make run`: one per CPU core (each runs one job at a time, one BLAS thread).
WORKERS ?= $(shell $(PYTHON) -c 'import os; print(os.cpu_count() or 1)')

.PHONY: run test venv lint bench clean

$(STAMP): requirements.txt requirements-dev.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $(STAMP)

venv: $(STAMP)

# The web process refuses to start without a strong SECRET_KEY: a local install gets one generated
# once into $(SNAPMATCH_VAR_DIR)/secret_key (mode 0600); a SECRET_KEY in the environment wins.
SECRET_KEY_FILE := $(SNAPMATCH_VAR_DIR)/secret_key

$(SECRET_KEY_FILE):
	@mkdir -p $(SNAPMATCH_VAR_DIR)
	@umask 077 && $(PYTHON) -c 'import secrets; print(secrets.token_urlsafe(48))' > $@.tmp && mv $@.tmp $@
	@echo "Generated a SECRET_KEY for this install in $@ (keep it private)."

run: $(STAMP) $(SECRET_KEY_FILE)
	@mkdir -p var
	@SECRET_KEY=$${SECRET_KEY:-$$(cat $(SECRET_KEY_FILE))}; export SECRET_KEY; \
	REDIS_URL=$$(PYTHON=$(BIN)/python scripts/ensure_redis.sh) || exit 1; export REDIS_URL; \
	$(BIN)/flask --app webapp db upgrade && \
	$(BIN)/flask --app webapp users bootstrap && \
	echo "" && \
	echo "Snapmatch is starting on http://127.0.0.1:$${PORT:-8000} with $(WORKERS) worker(s) (REDIS_URL=$$REDIS_URL)" && \
	echo "Sign in at http://127.0.0.1:$${PORT:-8000}/login (first admin: $(SNAPMATCH_VAR_DIR)/first-admin.txt)." && \
	echo "More users and API tokens, in another terminal:" && \
	echo "  $(BIN)/flask --app webapp users create you@example.com --role photographer --password 'choose-one'" && \
	echo "  $(BIN)/flask --app webapp tokens create you@example.com" && \
	echo "" && \
	PATH="$(abspath $(BIN)):$$PATH" PORT=$${PORT:-8000} $(BIN)/honcho start -f Procfile -c worker=$(WORKERS) web worker scheduler

test: $(STAMP)
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

bench: $(STAMP)
	$(BIN)/python bench/run_all.py

clean:
	rm -rf $(VENV) var .pytest_cache
