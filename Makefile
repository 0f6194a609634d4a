# The README's two commands: `make run` (the main job on the embedded default) and `make test`.
# Each first does its own set-up, idempotently: Debian packages when missing, the virtual
# environment in .venv when pyproject.toml or constraints.txt changed since it was built.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
PYTHON ?= $(shell command -v python3.11 || command -v python3)
DEBS := pkg-config libopencv-dev libturbojpeg0-dev dataset-fashion-mnist
SUDO := $(shell [ "$$(id -u)" -eq 0 ] || echo sudo)
STAMP := $(VENV)/.installed

.PHONY: run test claims study momentum-sweep setup debs bench bench-quick bench-peer

# The whole DAG on the embedded default through DVC, ending with results/report.md. DVC needs a
# Git repository with a commit: a copy of the sources without .git gets one first.
run: setup
	@git rev-parse --verify -q HEAD >/dev/null 2>&1 || { \
	  echo "no Git commit here: creating one, DVC needs it"; \
	  git init -q . && git add -A && \
	  git -c user.name=momentum-ssl -c user.email=momentum-ssl@localhost commit -qm "initial"; }
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(VENV)/bin/dvc repro
	@sed -n '1,/^## Gradient/p' results/report.md | sed '$$d'

test: setup
	$(PY) -m pytest

# The claims study (params/claims.yaml): every claim its runs can test, at eight seeds, through
# DVC in studies/claims (cached: an interrupted study resumes, a clone pulls what a remote
# holds), then docs/CLAIMS.md from its report. About 85 minutes from scratch on a 2-core
# machine; a rerun trains only what changed (docs/CONFIGURATION.md).
claims: setup
	$(PY) -m momentum_ssl study claims
	@start=$$(date +%s) && cd studies/claims && PATH="$(CURDIR)/$(VENV)/bin:$$PATH" dvc repro && \
	  $(CURDIR)/$(PY) -m momentum_ssl claims-doc --out $(CURDIR)/docs/CLAIMS.md \
	    --wall-s $$(( $$(date +%s) - start ))
	@sed -n '/^\*\*[0-9]* claims:/p;/^## Verdicts/,/^!\[/p' docs/CLAIMS.md | sed '$$d'

# Any profile params/$(STUDY).yaml as a study: studies/$(STUDY)/ with its dvc.yaml, Snakefile and
# params.yaml (a copy, sweeps written out). Run it there: dvc repro, or snakemake --cores all
# --resources gpu=4 (docs/CONFIGURATION.md, Studies).
study: setup
	@test -n "$(STUDY)" || { echo "usage: make study STUDY=NAME (a profile params/NAME.yaml)"; exit 2; }
	$(PY) -m momentum_ssl study $(STUDY)

# The momentum sweep (params/momentum_sweep.yaml): MoCo v3 at four momentum coefficients and with
# residual momentum at three weights, eight seeds, through DVC in studies/momentum_sweep (cached:
# an interrupted sweep resumes), then its page docs/MOMENTUM_SWEEP.md. 49 minutes from scratch on
# 2 cores (2026-12-06).
momentum-sweep: setup
	$(PY) -m momentum_ssl study momentum_sweep
	@start=$$(date +%s) && cd studies/momentum_sweep && PATH="$(CURDIR)/$(VENV)/bin:$$PATH" dvc repro && \
	  $(CURDIR)/$(PY) -m momentum_ssl sweep-doc momentum_sweep --out $(CURDIR)/docs/MOMENTUM_SWEEP.md \
	    --wall-s $$(( $$(date +%s) - start ))
	@sed -n '/^## The sweeps/,/^## Runs/p' docs/MOMENTUM_SWEEP.md | sed '$$d'

# One script per speed claim (docs/BENCHMARKS.md); each prints a table with its ratio last.
# bench-quick leaves out the end-to-end run (a clean `dvc repro` of the embedded default, about
# 5 minutes here) and the no-op reruns that reuse its temporary clone.
bench: bench-quick
	@dir=$$(mktemp -d -t momentum-ssl-bench.XXXXXX) && trap 'rm -rf "$$dir"' EXIT && \
	  set -x && $(PY) bench/e2e.py --dir "$$dir/repo" && $(PY) bench/noop.py --dir "$$dir/repo"

bench-quick: setup
	$(PY) bench/loader.py
	$(PY) bench/pipeline.py
	$(PY) bench/writer.py
	$(PY) bench/step.py
	$(PY) bench/ema.py
	$(PY) bench/probes.py
	$(PY) bench/flops.py
	$(PY) bench/gpu.py
	$(PY) bench/portable.py
	$(MAKE) bench-peer

# Goal 3 against lightly, a bench-only dependency that `make run` and `make test` never install.
# --no-deps: lightly requires pytorch_lightning, which the parts bench/peer.py imports never load
# (bench/requirements-peer.txt); nothing installed changes version.
bench-peer: setup
	$(PY) -m pip install -q --disable-pip-version-check --no-deps -c constraints.txt \
	  -r bench/requirements-peer.txt
	$(PY) bench/peer.py

setup: debs $(STAMP)

debs:
	@missing=$$(for p in $(DEBS); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:" $$missing; \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing; \
	fi

$(STAMP): pyproject.toml constraints.txt
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' || \
	  { echo "momentum-ssl needs Python 3.11 (found $(PYTHON)); set PYTHON=/path/to/python3.11"; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -c constraints.txt -e '.[test]'
	touch $@
