# relsec: the two commands of the README, and a few more for development.
#   make demo   from nothing to alerts on screen (local Kafka, topics, worker, the seed story)
#   make test   the whole test suite, Kafka tests included (the suite starts its own broker)

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test lint typecheck install install-test browser clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# pip's output (setuptools' notes on editable installs) goes to a log, shown on failure only.
install: $(BIN)/python
	@$(BIN)/pip install --quiet -e '.[rocksdb]' > $(VENV)/pip-install.log 2>&1 \
	  || { cat $(VENV)/pip-install.log; exit 1; }

install-test: $(BIN)/python
	$(BIN)/pip install --quiet -e '.[test,rocksdb,registry]'

demo: install
	@$(BIN)/relsec demo

lint: install-test
	$(BIN)/ruff check agents streams tests benchmarks

# mypy --strict over every package of the product (issue 12.6).
STRICT := agents streams

typecheck: install-test
	$(BIN)/mypy --strict $(STRICT)

# The timeline page's tests drive Debian's Chromium through Playwright (Playwright's own
# browser download is not used); installed here when missing, with sudo when not root.
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" -eq 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium; }

# The install compiles agents/engine, agents/model and the worker's per-record modules with
# mypyc (setup.py, agents/model/_pure.py; RELSEC_PURE_PYTHON=1 at install time builds none).
# The suite runs against the compiled build, then the engine, model, scenario and
# worker-core tests again against the pure-Python sources; tests/engine/test_build.py
# asserts which build each run loaded. Where no C compiler is: make test EXPECT_BUILD=pure.
EXPECT_BUILD ?= compiled
BOTH_BUILDS := tests/engine tests/test_model.py tests/test_wire.py tests/test_scenarios.py \
  tests/worker/test_core.py tests/worker/test_merge.py tests/codecs/test_avro_direct.py \
  tests/codecs/test_alert_value_path.py tests/test_ocsf.py tests/worker/test_checkpoint.py \
  tests/worker/test_state_outbox.py tests/worker/test_tally.py

test: install-test lint typecheck browser
	RELSEC_EXPECT_BUILD=$(EXPECT_BUILD) $(BIN)/python -m pytest -q -p no:cacheprovider --durations=15
	RELSEC_PURE_PYTHON=1 RELSEC_EXPECT_BUILD=pure \
	  $(BIN)/python -m pytest -q -p no:cacheprovider $(BOTH_BUILDS)

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
