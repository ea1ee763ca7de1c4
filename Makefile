# The two commands of the README's quick start. Each sets up `.venv` from nothing but
# Python 3.11 (and Java, which pycocoevalcap calls), then does its work.
PYTHON ?= python3.11
VENV := .venv
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: setup repro test regression

repro: setup
	dvc repro

# The tests (the slow ones include the pipeline on real Flickr8k data, when
# ../shared/data/flickr8k-dev is there), then the regression run on the committed metrics.
test: setup
	.ci/install-chromium
	pytest
	$(MAKE) regression

# `dvc repro` on `shapes`, then the two halves of fillblank/regression.py: training and the
# whole pipeline against the committed metrics/, within tolerances measured across CPU
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
