# kimiproxy — two set-up commands for a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
HOST ?= 127.0.0.1
PORT ?= 8000
POSTGRES_URL ?= postgres://postgres@127.0.0.1:5432/test

.PHONY: run test test-postgres demo bench check venv dev-venv migrate clean

# The venv is rebuilt when a requirements file changes (stamp files).
$(VENV)/.runtime: requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -r requirements.txt
	touch $@

$(VENV)/.dev: requirements.txt requirements-dev.txt $(VENV)/.runtime
	$(PY) -m pip install -q --disable-pip-version-check -r requirements-dev.txt
	touch $@

venv: $(VENV)/.runtime
dev-venv: $(VENV)/.dev

migrate: venv
	DEBUG=true $(PY) manage.py migrate --noinput

## make run: serve on http://127.0.0.1:8000 with SQLite, through uvicorn (runserver buffers async streams).
## Set DJANGO_SUPERUSER_USERNAME / DJANGO_SUPERUSER_PASSWORD / DJANGO_SUPERUSER_EMAIL to create an admin.
run: migrate
	DEBUG=true $(PY) manage.py collectstatic --noinput -v0
	@if [ -n "$$DJANGO_SUPERUSER_USERNAME" ]; then DEBUG=true $(PY) manage.py createsuperuser --noinput 2>/dev/null || true; fi
	DEBUG=true $(VENV)/bin/uvicorn kimiproxy.asgi:application --host $(HOST) --port $(PORT) --no-access-log

## make test: the whole suite on SQLite (browser tests skip with a reason where Chromium is missing).
test: dev-venv
	$(VENV)/bin/pytest -q

## make test-postgres: the same suite against PostgreSQL, where the concurrency tests run.
test-postgres: dev-venv
	DATABASE_URL=$(POSTGRES_URL) $(VENV)/bin/pytest -q

## make demo: the gateway against the fake Kimi server, with a demo account and key; no Kimi token needed.
demo: migrate
	$(PY) bench/demo.py

## make bench: performance benchmark (loopback only; stops by itself).
bench: dev-venv
	$(PY) bench/run.py

## make check: lint, Django system checks, missing migrations.
check: dev-venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy accounts gateway kimiproxy
	DEBUG=true $(PY) manage.py check
	DEBUG=true $(PY) manage.py makemigrations --check --dry-run

clean:
	rm -rf $(VENV) staticfiles data
