# The README's two commands: `make run` and `make test`. Each makes its own virtualenv.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: run test lint bench clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]' --config-settings editable_mode=compat
	touch $@

run: $(BIN)/.installed
	@echo "golemd: dashboard and /metrics on http://127.0.0.1:7070; to log in, run $(BIN)/golemctl dashboard in another terminal"
	$(BIN)/golemd --app examples/agents.py --http 127.0.0.1:7070

# The integration suite runs a second time with its daemons on PostgreSQL
# (tests/pg.py: skipped without PostgreSQL's server, failed under CI). Each
# run spreads its tests over TEST_WORKERS processes (pytest-xdist): most of a
# test is waiting on daemons, workers and sockets, so three share two cores
# well (5:03 against 6:45 for the first run, back to back). TEST_WORKERS=0 runs them
# in this one process.
TEST_WORKERS ?= 3
test: $(BIN)/.installed
	$(BIN)/ruff check .
	$(BIN)/mypy --strict golemd/model golemd/engine golemd/wire golemctl
	$(BIN)/pytest -n $(TEST_WORKERS) --dist worksteal
	GOLEMD_TEST_STORE=postgresql $(BIN)/pytest -n $(TEST_WORKERS) --dist worksteal tests/integration

lint: $(BIN)/.installed
	$(BIN)/ruff check .
	$(BIN)/mypy --strict golemd/model golemd/engine golemd/wire golemctl

bench: $(BIN)/.installed
	$(BIN)/python -m bench.run

clean:
	rm -rf $(VENV) build *.egg-info
