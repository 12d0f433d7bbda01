# Two entry points, both safe on a fresh machine (Python 3.11 and pip, nothing else):
#   make demo   set up .venv, then check and summarise specs/googlenet.cnn
#   make test   set up .venv, then run the whole test suite
# pyproject.toml declares version ranges for users; the exact torch pair that
# development and CI use is pinned here.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
TORCH  := torch==2.14.1 torchvision==0.29.1

.PHONY: setup demo test
setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet $(TORCH)
	$(BIN)/pip install --quiet -e ".[torch,test]"
	touch $@

demo: setup
	$(BIN)/cnnspec check specs/googlenet.cnn
	$(BIN)/cnnspec summary specs/googlenet.cnn

test: setup
	$(BIN)/python -m pytest
