# Two entry points, both safe on a fresh machine (Python 3.11 and pip, nothing else):
#   make demo   set up, then compile specs/googlenet.cnn (summary + out/googlenet.py),
#               render its diagram (out/googlenet.svg) and its interactive explorer
#               (out/googlenet.html), and train specs/lenet5.cnn on
#               scikit-learn's handwritten digits for 5 epochs (out/lenet5-run)
#   make test   set up, check the package's layering (lint-imports), then run the
#               whole test suite
#   make mutate mutation testing of the modules that compute, build, generate and
#               train, by groups (tests/mutation/; slow: hours on 2 cores; not part
#               of CI), then the outcome per module
# Setting up makes .venv and, when Graphviz's `dot` is missing, installs it with
# apt-get (as root, or through sudo); `make test` installs chromium and its driver
# the same way, for the explorer's browser tests.
# pyproject.toml declares version ranges for users; the exact torch pair that
# development and CI use is pinned here.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
TORCH  := torch==2.14.1 torchvision==0.29.1

.PHONY: setup demo test mutate graphviz browser
setup: $(VENV)/.installed graphviz

# Graphviz's `dot` lays out diagrams (render, the explorer, make demo).
graphviz:
	@command -v dot >/dev/null || { $(APT_INSTALL) graphviz >/dev/null; }

# Only the tests need a browser: Debian's chromium and its driver run the explorer's
# browser tests (tests/test_explorer_browser.py), since no browser download works here.
browser:
	@command -v chromedriver >/dev/null || { $(APT_INSTALL) chromium chromium-driver >/dev/null; }

# apt-get as root, or through sudo
APT_INSTALL = SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	$$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet $(TORCH)
	$(BIN)/pip install --quiet -e ".[torch,train,chart,lsp,test]"
	touch $@

demo: setup
	mkdir -p out
	$(BIN)/cnnspec compile specs/googlenet.cnn -o out/googlenet.py
	$(BIN)/cnnspec render specs/googlenet.cnn -o out/googlenet.svg --depth 2
	$(BIN)/cnnspec render specs/googlenet.cnn -o out/googlenet.html
	@echo "diagram: out/googlenet.svg; explorer (open it in a browser): out/googlenet.html"
	rm -rf out/lenet5-run
	$(BIN)/cnnspec train specs/lenet5.cnn --data digits --epochs 5 --out out/lenet5-run

# lint-imports checks the pipeline's layering (pyproject.toml, [tool.importlinter]).
test: setup browser
	$(BIN)/lint-imports --no-cache
	$(BIN)/python -m pytest -n 2

# Mutation testing by groups of modules (tests/mutation/*.cfg): `make mutate` runs them
# all, `make mutate GROUPS=core` one of them.
mutate: setup
	$(BIN)/python tests/mutation/run.py $(GROUPS)
