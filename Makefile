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
# (tests/pg.py: skipped without PostgreSQL's server, failed under CI). Side by
# side (tests/run.py) is faster but made a timing test flaky under load.
test: $(BIN)/.installed
	$(BIN)/ruff check .
	$(BIN)/mypy --strict golemd/model golemd/engine golemd/wire golemctl
	$(BIN)/pytest
	GOLEMD_TEST_STORE=postgresql $(BIN)/pytest tests/integration

lint: $(BIN)/.installed
	$(BIN)/ruff check .
	$(BIN)/mypy --strict golemd/model golemd/engine golemd/wire golemctl

bench: $(BIN)/.installed
	$(BIN)/python -m bench.run

clean:
	rm -rf $(VENV) build *.egg-info
