VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install demo test run lint bench clean

$(STAMP): pyproject.toml src/arbwire/_book.c src/arbwire/_levels.c src/arbwire/_fold.c src/arbwire/_sbe.c
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/arbwire demo $(ARGS)

test: $(STAMP)
	$(VENV)/bin/ruff check src tests bench
	$(PY) -m pytest -q $(ARGS)

run: $(STAMP)
	$(VENV)/bin/arbwire run $(ARGS)

bench: $(STAMP)
	$(PY) bench/pipeline.py

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info
