# Two entry points (see README): `make demo` and `make test`. Both create .venv when missing.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench clean

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	# torch pinned to the CPU build on this machine's disk; an unpinned torch pulls a multi-GB CUDA build.
	$(PY) -m pip install -q --disable-pip-version-check torch==2.13.0
	$(PY) -m pip install -q --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/smartcash demo

test: $(STAMP)
	$(PY) -m ruff check smartcash_core smartcash_client service tests
	$(PY) -m pytest -q

lint: $(STAMP)
	$(PY) -m ruff check smartcash_core smartcash_client service tests

clean:
	rm -rf $(VENV) build *.egg-info
