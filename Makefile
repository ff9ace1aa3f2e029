# One-command entry points (see README.md):
#   make demo   set everything up, then run the demo on built-in simulated data
#   make test   set everything up, then run the test suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DEMO_DIR ?= demo-output
# Debian packages: Open MPI (mpi4py, OM and psana under mpirun), Kerberos headers (psana's pykerberos)
APT_PACKAGES := openmpi-bin libopenmpi-dev libkrb5-dev

.PHONY: demo test setup system-deps clean

demo: setup
	$(BIN)/sfx-cnn-veto demo $(DEMO_DIR)

test: setup
	$(BIN)/python -m pytest

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	@$(MAKE) --no-print-directory system-deps
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[all]"
	@touch $@

system-deps:
	@if dpkg -s $(APT_PACKAGES) >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ]; then \
	  echo "Installing Debian packages: $(APT_PACKAGES)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(APT_PACKAGES) >/dev/null; \
	else \
	  echo "Please install the Debian packages first: sudo apt-get install $(APT_PACKAGES)"; exit 1; \
	fi

clean:
	rm -rf $(VENV) $(DEMO_DIR) .pytest_cache
