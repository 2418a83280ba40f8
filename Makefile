# Two commands do everything, from a clean clone on a Debian machine with Python 3.11:
#   make search   set up, then run the flagship search (spaces/augment_strength.yaml)
#   make test     set up, then run the test suite (CI runs this through .ci/run)
# Set-up = a virtual environment in .venv with the pinned stack, and Fashion-MNIST from
# Debian's dataset-fashion-mnist package when it is missing.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
FMNIST := /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: setup search test bench lint data

setup: $(VENV)/.installed data

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

data:
	@if [ ! -f $(FMNIST) ]; then \
	  if command -v apt-get >/dev/null; then \
	    echo "installing Fashion-MNIST (Debian package dataset-fashion-mnist)"; \
	    $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq dataset-fashion-mnist; \
	  else \
	    echo "Fashion-MNIST not found at $(FMNIST) and no apt-get: set dataset.download: true in the spec"; \
	  fi; \
	fi

search: setup
	$(PY) -m search.run spaces/augment_strength.yaml

test: setup
	$(PY) -m pytest -q

bench: setup
	$(PY) benchmarks/throughput.py
	$(PY) benchmarks/quality.py

lint: setup
	$(VENV)/bin/ruff check .
