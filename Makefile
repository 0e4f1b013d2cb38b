# One-command set-up: every target creates .venv and installs what it needs, through scripts/install.sh
# (the same script the Dockerfile and CI run). The script keeps a stamp (.venv/.installed) of the extras
# installed, so a target whose packages are already there installs nothing: `make serve` after `make test`
# starts at once.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000
INSTALL := PYTHON=$(PY) bash scripts/install.sh
TEST_WORKERS ?= 2
FUZZ := tests/api/test_openapi_fuzz.py

.PHONY: install install-serve install-gpu serve test bench lint clean

install:          # everything: what the tests need (torch 2.13.0 CPU build first, every extra, chromium, espeak-ng)
	$(INSTALL) test $(VENV)

install-serve:    # the server, the preview engine and the README snippets' packages; no torch, no browser
	$(INSTALL) serve $(VENV)

install-gpu:      # the ltx2 engine: torch (CUDA build on Linux; TORCH_INDEX_URL to choose), diffusers, ...
	$(INSTALL) gpu $(VENV)

serve: install-serve
	$(BIN)/clipforge serve --host $(HOST) --port $(PORT)

test: install
	# Two processes share the suite file by file (most tests wait on servers and subprocesses, not the CPU).
	# The schema fuzzer's cases all share one test id, which pytest-xdist cannot schedule, so it runs after.
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile --ignore=$(FUZZ)
	$(BIN)/python -m pytest -q $(FUZZ)

bench: install
	# bench/ltx2_gpu.py needs a CUDA device; without one it runs its CPU plumbing check (--toy)
	for b in bench/*.py; do args=; [ $$b = bench/ltx2_gpu.py ] && ! command -v nvidia-smi >/dev/null && args=--toy; \
		echo "== $$b $$args"; $(BIN)/python $$b $$args || exit 1; done

lint: install
	$(BIN)/ruff check src tests bench

clean:
	rm -rf $(VENV) .pytest_cache
