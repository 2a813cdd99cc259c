# relsec: the two commands of the README, and a few more for development.
#   make demo   from nothing to alerts on screen (local Kafka, topics, worker, the seed story)
#   make test   the whole test suite, Kafka tests included (the suite starts its own broker)

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test lint typecheck install install-test clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

install: $(BIN)/python
	$(BIN)/pip install --quiet -e '.[rocksdb]'

install-test: $(BIN)/python
	$(BIN)/pip install --quiet -e '.[test,rocksdb,registry]'

demo: install
	$(BIN)/relsec demo

lint: install-test
	$(BIN)/ruff check agents streams tests benchmarks

# mypy --strict over the engine and the worker (streams/worker and the modules it is
# built on); the rest of streams/ joins as its owners make it pass (issue 12.6).
STRICT := agents/model agents/engine agents/errors.py \
	streams/worker streams/settings.py streams/kafka/clients.py streams/kafka/topics.py \
	streams/publish.py

typecheck: install-test
	$(BIN)/mypy --strict $(STRICT)

test: install-test lint typecheck
	$(BIN)/python -m pytest -q -p no:cacheprovider --durations=15

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
