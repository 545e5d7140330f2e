# skylens: `make demo` and `make test` work on a fresh machine (Python 3.10+, pip reaching PyPI).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
# torch/torchvision are pinned and installed first: an unpinned torch pulls a multi-GB newer build.
TORCH_PINS := torch==2.14.1 torchvision==0.29.1
STAMP := $(VENV)/.installed

.PHONY: demo test lint format bench clean setup browser-deps

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q $(TORCH_PINS)
	$(PIP) install -q -e ".[dev,openclip,serve,eval]" $(TORCH_PINS)
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/skylens demo --out demo_out

# Debian's Chromium drives the browser tests (tests/test_browser.py skips without it).
browser-deps: $(STAMP)
	@if [ ! -x /usr/bin/chromium ] && command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
	  apt-get update -qq && apt-get install -y -qq chromium >/dev/null || echo "chromium not installed: browser tests will skip"; fi

test: $(STAMP) browser-deps
	$(PY) -m pytest -q -p no:cacheprovider --timeout=600

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/ruff format --check src tests bench

format: $(STAMP)
	$(VENV)/bin/ruff check --fix src tests bench
	$(VENV)/bin/ruff format src tests bench

clean:
	rm -rf $(VENV) demo_out bench/work

# skylens curate: build the training set from ../shared/data (bench/make_dataset.py; writes bench/work/dataset)
dataset: $(STAMP)
	PYTHONPATH=src $(PY) bench/make_dataset.py
