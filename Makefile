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

# `dvc repro` on `shapes`; then any metric that moved from the committed metrics/shapes.json,
# or BiBS below a baseline on CIDEr, fails with a table of what moved.
regression: setup
	git show HEAD:metrics/shapes.json > .venv/committed-shapes.json
	dvc repro
	python -m fillblank.regression .venv/committed-shapes.json metrics/shapes.json

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet -e '.[test]'
	$(VENV)/bin/python -c "import fillblank, torch, torchvision, dvc"
	touch $@
