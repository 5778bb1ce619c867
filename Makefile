# Two commands: `make test` and `make demo`. Each builds .venv if needed.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: test test-all demo bench lint clean

$(STAMP): setup.cfg pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -c constraints.txt -e '.[test,dev,peers]'
	touch $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q -n 2

test-all: $(STAMP)
	$(PY) -m pytest -q -n 2 -m ''

# Two experiments at a time (DHP, which times itself, runs alone at the end).
DEMO_JOBS ?= 2

demo: $(STAMP)
	$(PY) -m experiments.run_all --workdir runs/demo --jobs $(DEMO_JOBS)

bench: $(STAMP)
	$(PY) -m pip install -q -c constraints.txt -e '.[bench]'
	$(PY) -m experiments.benchmarks.run_all

lint: $(STAMP)
	$(VENV)/bin/ruff check .

clean:
	rm -rf $(VENV) runs build *.egg-info
