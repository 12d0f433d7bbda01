# Two entry points, both safe on a fresh machine (Python 3.11 and pip, nothing else):
#   make demo   set up .venv, then check and summarise specs/googlenet.cnn
#   make test   set up .venv, then run the whole test suite
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: setup demo test
setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[test]"
	touch $@

demo: setup
	$(BIN)/cnnspec check specs/googlenet.cnn
	$(BIN)/cnnspec summary specs/googlenet.cnn

test: setup
	$(BIN)/python -m pytest
