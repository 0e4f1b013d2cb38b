# One-command set-up: every target creates .venv and installs what it needs.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: install serve test bench lint clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# torch first: the CPU build pinned here installs from the local wheel cache; the
	# range in pyproject's `models` extra is then already satisfied.
	$(BIN)/python -m pip install --quiet "torch==2.13.0"
	$(BIN)/python -m pip install --quiet -e ".[models,postgres,s3,dev]"
	# Debian's chromium (the playground's browser tests; never a downloaded browser) and espeak-ng (spoken
	# dialogue in preview clips); root only, and optional: tests that need them skip with the reason.
	for pkg in chromium espeak-ng; do command -v $$pkg >/dev/null 2>&1 || [ "$$(id -u)" != 0 ] \
		|| apt-get install -y --no-install-recommends $$pkg || (apt-get update && apt-get install -y \
		--no-install-recommends $$pkg) || true; done
	touch $(STAMP)

install: $(STAMP)

serve: $(STAMP)
	$(BIN)/clipforge serve --host $(HOST) --port $(PORT)

test: $(STAMP)
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	for b in bench/*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

lint: $(STAMP)
	$(BIN)/ruff check src tests bench

clean:
	rm -rf $(VENV) .pytest_cache
