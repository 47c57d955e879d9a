# The two commands of the README: `make demo` and `make test`. Both start from a fresh clone.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The test suite runs on PostgreSQL and Redis (on loopback on these machines); override to taste.
TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/test
TEST_REDIS_URL ?= redis://127.0.0.1:6379/15
PORT ?= 8000
STRIPE_PORT ?= 8420
SHOPIFY_PORT ?= 8430
VIES_PORT ?= 8440
# A fresh random key per run: the settings refuse the demo's key when DEBUG is false.
TEST_SECRET_KEY ?= $(shell $(PYTHON) -c 'import secrets; print(secrets.token_urlsafe(40))')
# `make test CLOCK=2027-02-28T23:59:00Z` runs the whole suite with the wall clock moved there.
CLOCK ?=

.PHONY: demo demo-advance test lint install clean reference-histories chaos fuzz-api

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

## Run the portal on embedded defaults (SQLite, in-process tasks, the Stripe, Shopify and VIES
## stand-ins) with demo data. `make demo PORT=9000 STRIPE_PORT=9420 SHOPIFY_PORT=9430
## VIES_PORT=9440` picks the ports; the scheduler runs beside the server.
demo: $(STAMP)
	$(BIN)/python scripts/demo.py --port $(PORT) --stripe-port $(STRIPE_PORT) --shopify-port $(SHOPIFY_PORT) \
	  --vies-port $(VIES_PORT)

## Move the demo's clock forward (the demo must have been started once): periods end, invoices
## are issued and collected, as the scheduler would have done over those days.
DAYS ?= 31
demo-advance: $(STAMP)
	$(BIN)/python manage.py demo_advance --days $(DAYS)

## Run the whole test suite (PostgreSQL and Redis on loopback). It ends with its 40 slowest tests:
## where to look first when the suite grows past its 15 minutes. It runs on every core
## (pytest-xdist: each worker its own test database and Redis database, tests/conftest.py);
## `make test TEST_WORKERS=0` runs it in one process. `--dist load` hands each worker tests in
## collection order, which pytest-django sorts so that tests sharing the migrated data (the ECB
## seed rates, say) run before any test whose flush empties every table; work stealing broke it.
TEST_WORKERS ?= auto
test: $(STAMP)
	DATABASE_URL=$(TEST_DATABASE_URL) TEST_REDIS_URL=$(TEST_REDIS_URL) \
	  SECRET_KEY=$(TEST_SECRET_KEY) $(BIN)/pytest -n $(TEST_WORKERS) --dist load --durations=40 \
	  $(if $(CLOCK),--clock $(CLOCK) -m "not clock_free")

## The reference-biller histories at length (random, HISTORIES of them; CI runs a fixed 200).
HISTORIES ?= 2000
reference-histories: $(STAMP)
	DATABASE_URL=$(TEST_DATABASE_URL) TEST_REDIS_URL=$(TEST_REDIS_URL) \
	  SECRET_KEY=$(TEST_SECRET_KEY) REFERENCE_HISTORIES=$(HISTORIES) \
	  $(BIN)/pytest -s tests/billing/test_reference_histories.py

## Schemathesis at length (docs/api.md, "The schema under fuzzing"): the test `make test` runs,
## with EXAMPLES generated cases per operation (CI: 20), 3 x EXAMPLES of the coverage phase's
## and EXAMPLES walks of the schema's links; the counts of cases and of failures by check print.
EXAMPLES ?= 500
fuzz-api: $(STAMP)
	DATABASE_URL=$(TEST_DATABASE_URL) TEST_REDIS_URL=$(TEST_REDIS_URL) \
	  SECRET_KEY=$(TEST_SECRET_KEY) SCHEMA_FUZZ_EXAMPLES=$(EXAMPLES) \
	  $(BIN)/pytest tests/api/test_schema_fuzz.py

## The chaos suite at its full counts (CI runs a fast slice of every case); the counts of each
## case print at the end of the run. See docs/reliability.md. CHAOS_<CASE>=n sets one case.
## tests/chaos includes test_worker_chaos.py: real `celery worker`s (3 pool processes) on
## TEST_REDIS_URL, SIGKILLed.
chaos: $(STAMP)
	DATABASE_URL=$(TEST_DATABASE_URL) TEST_REDIS_URL=$(TEST_REDIS_URL) \
	  SECRET_KEY=$(TEST_SECRET_KEY) CHAOS_SCALE=full \
	  $(BIN)/pytest tests/chaos tests/billing/test_fault_proxy.py \
	  tests/billing/test_reconcile_stripe.py tests/operations/test_beat_lock.py

## ruff, then the import contract of pyproject.toml (the layers of docs/architecture.md), then
## mypy ([tool.mypy] in pyproject.toml: strict on the pure modules). The django-stubs plugin
## imports the settings, which need no environment (they fall back to the demo's defaults).
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/lint-imports
	$(BIN)/mypy
	DEBUG=true $(BIN)/python manage.py makemigrations --check --dry-run

clean:
	rm -rf $(VENV) var/db.sqlite3 var/localstripe.pickle var/mail var/demo-clock .env.demo
