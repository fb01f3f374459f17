# Developer commands; `make help` lists them. CI (.ci/run) runs `lint` and `test`.
.DEFAULT_GOAL := help
PYTHON ?= python
LINTED := src tests train.py predict.py extract.py benchmarks hydra_plugins

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

install:  ## install the pinned requirements into the current environment
	$(PYTHON) -m pip install -r requirements.txt

lint:  ## ruff lint + format check, the import layers (no cycles), and the type checker on src/
	ruff check $(LINTED)
	ruff format --check $(LINTED)
	lint-imports
	mypy

format:  ## fix what ruff can fix and format everything
	ruff check --fix $(LINTED)
	ruff format $(LINTED)

test:  ## the default test suite (what the README and CI run)
	$(PYTHON) -m pytest -q

test-slow:  ## the slow tests only (long fits, real-data learning checks)
	$(PYTHON) -m pytest -q -m slow

demo:  ## train the demo (3-fold CV on generated slides)
	$(PYTHON) train.py

.PHONY: help install lint format test test-slow demo
