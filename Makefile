# Two commands do all the set-up: `make run` and `make test`. Both create .venv on first use.
# `make run` installs the runtime only; `make test` and `make lint` add the `dev` extra (tests and
# linters). Packages go in through uv, which fetches them in parallel: on a fresh clone, with the
# machine busy, installing the runtime took 120-150 s with pip and 11 s with uv (plus about 10 s
# to install uv itself). Where uv cannot be had, pip does the same work.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
RUNTIME := $(VENV)/.installed-runtime
DEV := $(VENV)/.installed-dev
# $(call install,ARGS): uv when the venv has it, else the venv's pip (installed on demand).
install = if [ -x $(BIN)/uv ]; then $(BIN)/uv pip install --python $(BIN)/python $(1); \
	else $(BIN)/python -m pip --version >/dev/null 2>&1 || $(BIN)/python -m ensurepip; \
	$(BIN)/python -m pip install --progress-bar off $(1); fi

.PHONY: run test lint bench clean

# A venv without pip is made in a second; the system's pip puts uv in it. Without a usable system
# pip (or without uv), the venv gets its own pip instead.
$(BIN)/python:
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "$(PYTHON) not found; set PYTHON=/path/to/python3.11"; exit 1; }
	@echo "==> creating $(VENV) with $(PYTHON)"
	$(PYTHON) -m venv --without-pip $(VENV)
	@echo "==> installing uv, the installer, into $(VENV)"
	$(PYTHON) -m pip --python $(BIN)/python install --no-compile uv \
	  || { echo "==> no uv: installing with pip instead"; $(BIN)/python -m ensurepip; }

$(RUNTIME): pyproject.toml | $(BIN)/python
	@echo "==> installing omnirelay and its runtime dependencies into $(VENV)"
	@$(call install,-e . pip)
	@touch $@

$(DEV): pyproject.toml | $(BIN)/python
	@echo "==> installing omnirelay with the dev extra (tests, linters) into $(VENV)"
	@$(call install,-e ".[dev]" pip)
	@touch $@ $(RUNTIME)

## Run the gateway on the embedded default: SQLite, sandbox channels, a printed dev account.
run: $(RUNTIME)
	@echo "==> $(BIN)/omnirelay serve $(ARGS)"
	@$(BIN)/omnirelay serve $(ARGS)

## Run the whole test suite (SQLite and, when it answers, PostgreSQL).
test: $(DEV)
	$(BIN)/python -m pytest $(ARGS)

lint: $(DEV)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/mypy

bench: $(RUNTIME)
	$(BIN)/python benchmarks/bench_gateway.py $(ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
