# The two commands of the README's quick start. Each sets up `.venv` from nothing but
# Python 3.11 (and Java, which pycocoevalcap calls), then does its work.
PYTHON ?= python3.11
VENV := .venv
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: setup repro test lint regression

repro: setup
	dvc repro

# Lint first, so that a style error fails in seconds; then every test in two processes of one
# thread each (two PyTorch processes of two threads each on two cores wait on each other far
# more than they work). The tests build the `shapes` pipeline once, in the background, while
# the others run at a lower priority (tests/conftest.py: built_shapes), and hold it to the
# committed metrics, as `make regression` does; with ../shared/data/flickr8k-dev there, they
# run the pipeline on real Flickr8k data too.
test: lint
	.ci/install-chromium
	OMP_NUM_THREADS=1 pytest -n 2 --dist worksteal

lint: setup
	ruff check .
	ruff format --check .

# `dvc repro` on `shapes` here, then the two halves of fillblank/regression.py: training and
# the whole pipeline against the committed metrics/, within tolerances measured across CPU
# kernel paths; decoding on the fixed captioners of tests/fixtures/shapes, tightly. Both
# halves run and report, whichever fails.
regression: setup
	rm -rf $(VENV)/committed && mkdir -p $(VENV)/committed
	git archive HEAD metrics | tar -x -C $(VENV)/committed
	dvc repro
	python -m fillblank.regression pipeline $(VENV)/committed/metrics metrics; \
	pipeline=$$?; python -m fillblank.regression decoding && exit $$pipeline

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet -e '.[test]'
	$(VENV)/bin/python -c "import fillblank, torch, torchvision, dvc"
	touch $@
