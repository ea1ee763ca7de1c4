# The two commands of the README's quick start. Each sets up `.venv` from nothing but
# Python 3.11 (and Java, which pycocoevalcap calls), then does its work.
PYTHON ?= python3.11
VENV := .venv
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: setup repro test

repro: setup
	dvc repro

test: setup
	pytest

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet -e '.[test]'
	$(VENV)/bin/python -c "import fillblank, torch, torchvision, dvc"
	touch $@
