# HIE node — the two commands of CONTRACT.md.
#   make serve   set up and run the node on the embedded default (SQLite + ./hie-data)
#   make test    set up (venv, Python packages, Debian PostgreSQL) and run the whole test suite
.PHONY: serve test venv deps bench clean

PYTEST_ARGS ?=

venv:
	./scripts/bootstrap.sh venv

deps:
	./scripts/bootstrap.sh deps

serve: venv
	.venv/bin/hie serve

test: deps venv
	.venv/bin/python -m pytest -q $(PYTEST_ARGS)

bench: deps venv
	.venv/bin/python bench/xds.py

clean:
	rm -rf .venv hie-data .pytest_cache .hypothesis
