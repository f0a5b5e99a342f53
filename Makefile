# The two commands the README gives: `make run` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: run test bench-deps clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

run: $(BIN)/.installed
	$(BIN)/facegate serve

test: $(BIN)/.installed
	$(BIN)/python -m pytest

# The face_recognition package, the peer that bench/ compares against. --no-deps because its
# `dlib` requirement would compile dlib from source; dlib-bin (from the dev extra) provides it.
bench-deps: $(BIN)/.installed
	$(BIN)/python -m pip install --quiet --no-deps face_recognition==1.3.0

clean:
	rm -rf $(VENV) .pytest_cache
