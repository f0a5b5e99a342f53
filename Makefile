# The README's two commands: `make run` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: run test bench-deps clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# The service and its runtime dependencies.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

# Plus the test tools and dlib-bin for the parity test.
$(VENV)/.installed-dev: pyproject.toml $(VENV)/.installed
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

run: $(VENV)/.installed
	$(BIN)/facegate serve

test: $(VENV)/.installed-dev
	$(BIN)/python -m pytest

# The face_recognition package, the peer that bench/ compares against. --no-deps because its
# `dlib` requirement would compile dlib from source; dlib-bin (from the dev extra) provides it.
bench-deps: $(VENV)/.installed-dev
	$(BIN)/python -m pip install --quiet --no-deps face_recognition==1.3.0
	touch $(VENV)/.installed-bench

clean:
	rm -rf $(VENV) .pytest_cache
