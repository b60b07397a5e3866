# Two commands do all set-up: `make demo` (the main job on the bundled offline demo) and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# System packages: FFmpeg (decoding), graphviz (DAG pictures), espeak-ng (test and demo speech),
# sox, slurm-wlm + munge for the one-node SLURM the cluster tests start, and chromium for the browser
# tests of the API's page and the report's dataset page (Playwright drives it; it downloads no browser).
APT_PACKAGES := ffmpeg graphviz espeak-ng sox slurm-wlm munge chromium
SUDO := $(shell [ "$$(id -u)" -eq 0 ] || echo sudo)
# The install stamp is keyed on the lock's content: a changed pin reinstalls, an unchanged one skips.
STAMP := $(VENV)/.installed-$(shell cat requirements.lock pyproject.toml | sha256sum | cut -c1-16)
CORES ?= all

.PHONY: install system-deps test test-realsize demo demo-pt dag lint bench lock clean-demo

install: system-deps $(STAMP)

system-deps:
	@missing=$$(for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing system packages:" $$missing; \
	  $(SUDO) apt-get update -q && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q --no-install-recommends $$missing; \
	fi

$(STAMP): requirements.lock pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -r requirements.lock
	$(BIN)/python -m pip install -q --no-deps -e .
	rm -f $(VENV)/.installed-*
	touch $@

test: install
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# XTTS-v2's own size (builtin:xtts-v2-size) through train, export, loader, synthesis and the API on CPU:
# ~10 GB of memory, ~10 minutes on 2 cores, so `make test` leaves it out.
test-realsize: install
	$(BIN)/python -m pytest -m realsize tests/test_realsize.py $(PYTEST_ARGS)

demo: install
	$(BIN)/snakemake --cores $(CORES)
	$(BIN)/snakemake --report report.html
	@echo
	@echo "Demo done. Segments: segments/  transcripts: transcripts/  dataset: dataset/"
	@echo "Fine-tuned model: checkpoints/  samples: samples/  metrics: reports/  report: report.html"

# The Portuguese demo (config/demo-pt.yaml) in its own working folder, demo-pt-run/.
demo-pt: install
	mkdir -p demo-pt-run
	$(BIN)/snakemake --snakefile $(CURDIR)/Snakefile --directory demo-pt-run --configfile $(CURDIR)/config/demo-pt.yaml --cores $(CORES)
	$(BIN)/snakemake --snakefile $(CURDIR)/Snakefile --directory demo-pt-run --configfile $(CURDIR)/config/demo-pt.yaml --report report.html
	@echo
	@echo "Portuguese demo done, in demo-pt-run/ (report: demo-pt-run/report.html)"

dag: install
	$(BIN)/snakemake --dag | dot -Tsvg > dag.svg
	$(BIN)/snakemake --rulegraph | dot -Tsvg > rulegraph.svg
	@echo "wrote dag.svg and rulegraph.svg"

lint: install
	$(BIN)/ruff check .
	$(BIN)/snakemake --lint

bench: install
	for b in benchmarks/bench_*.py; do $(BIN)/python $$b || exit 1; done

# Re-resolve requirements.in into exact pins (needs PyPI).
lock:
	$(BIN)/python -m pip install -q -r requirements.in
	$(BIN)/python -m pip freeze --exclude-editable > requirements.lock

clean-demo:
	rm -rf raw sources segments transcripts embeddings dataset models checkpoints runs samples reports logs report.html
