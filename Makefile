# resnet-nb: every target sets up .venv on first use (idempotent: a stamp file records
# the install, so a second call installs nothing unless pyproject.toml changed).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

# reproduction knobs: make reproduce PRESET=smoke DATASET=synthetic RUN_ID=my-run
# MODELS: a comma list, or a set (seed: the 2x2; sweep: plain/resnet 20-56 and resnet110);
# SEEDS: a comma list (several: runs <model>-seed<s>, mean +- std in the report)
PRESET  ?= seed
DATASET ?= cifar10
RUN_ID  ?=
MODELS  ?=
SEEDS   ?=
# PARALLEL: executions at once (default auto: 1 with a GPU, 2 on a multi-core CPU; on some CPUs 1 is faster: docs/speed.md)
PARALLEL ?=
# REPRO_ARGS: any other reproduce option, e.g. "--time-budget 3600 --data-root /data/cifar10 --set precision=bf16"
REPRO_ARGS ?=
PYTEST_ARGS ?=

.PHONY: help install test reproduce lab report publish readme sysdeps browserdeps slurmdeps golden bench clean

help:
	@echo "make reproduce   run the reproduction (PRESET=$(PRESET) DATASET=$(DATASET) RUN_ID= MODELS= SEEDS= PARALLEL= REPRO_ARGS=)"
	@echo "make install     set up .venv (every target does it on first use)"
	@echo "make test        set up .venv and run the test suite"
	@echo "make lab         open the notebooks in JupyterLab"
	@echo "make report      build the pandoc report of RUN_ID (default: the newest complete reproduction)"
	@echo "make bench       measure training images/s: common recipe vs fast paths (BENCH_ARGS=...)"
	@echo "make publish     copy a finished RUN_ID into report/published/ (BENCH=, PARITY=file) and update README's table"
	@echo "make readme      regenerate README's results table from report/published/"
	@echo "make sysdeps     install the Debian packages the PDF report needs (xelatex, CJK font, poppler)"
	@echo "make browserdeps install headless Chromium for the JupyterLab browser test"
	@echo "make slurmdeps   install a one-node SLURM for the cluster executor's test"
	@echo "make golden      regenerate the nbval golden notebooks after editing a notebook's .py source"
	@echo "make clean       remove .venv and the test cache"

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --disable-pip-version-check -q -e '.[dev,lab]'
	@touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

reproduce: $(STAMP)
	$(BIN)/resnet-nb reproduce --preset $(PRESET) --dataset $(DATASET) $(if $(RUN_ID),--run-id $(RUN_ID)) \
	    $(if $(MODELS),--models $(MODELS)) $(if $(SEEDS),--seeds $(SEEDS)) $(if $(PARALLEL),--parallel $(PARALLEL)) \
	    $(REPRO_ARGS)

# re-execute the four notebooks with smoke parameters on the synthetic fixture into the
# nbval golden copies tests/notebooks/*.ipynb (after changing a notebook's .py source)
golden: $(STAMP)
	$(BIN)/jupytext --sync notebooks/*.py
	$(BIN)/python tests/notebooks/make_golden.py

# report knobs: make report RUN_ID=my-run REPORT_LANG=zh FORMATS=pdf,html (without RUN_ID: the newest
# complete reproduction in experiments/, else the newest one published in report/published/, else the
# newest run id with the most models; the command says which)
REPORT_LANG ?= all
FORMATS     ?= pdf,docx,html
report: $(STAMP)
	$(BIN)/resnet-nb report $(if $(RUN_ID),--run-id $(RUN_ID)) --lang $(REPORT_LANG) --formats $(FORMATS)

# publish a finished reproduction for commit (after make report RUN_ID=<id>): run dirs without
# last.pth, figures, summary.json, the zh + en PDFs, the bench JSON -> report/published/<id>/, then
# the README's results table. make publish RUN_ID=<id> BENCH=bench.json PARITY=parity.json PUBLISH_ARGS=--force
BENCH        ?=
PARITY       ?=
PUBLISH_ARGS ?=
publish: $(STAMP)
	@test -n "$(RUN_ID)" || { echo "make publish: give RUN_ID=<run id> (build its report first: make report RUN_ID=<run id>)" >&2; exit 2; }
	$(BIN)/resnet-nb publish $(RUN_ID) $(if $(BENCH),--bench $(BENCH)) $(if $(PARITY),--parity $(PARITY)) --readme $(PUBLISH_ARGS)

# README.md's results table, regenerated from the committed report/published/ (resnet-nb publish --readme)
readme: $(STAMP)
	$(BIN)/resnet-nb publish --readme

# The Debian packages of sysdeps, browserdeps and slurmdeps: only the missing ones, apt-get as
# root or through sudo, 3 retries per download; a no-op when all are installed.
APT_INSTALL := sh scripts/apt_install.sh

# Debian packages the PDF report needs: xelatex, xeCJK (texlive-lang-chinese), a CJK font
# (Noto CJK) and poppler (pdftotext/pdftoppm for the report test). Installs only what is
# missing; a no-op (well under a second) when everything is there.
SYSDEPS := texlive-xetex texlive-latex-recommended texlive-fonts-recommended lmodern \
           texlive-lang-chinese fonts-noto-cjk fontconfig poppler-utils
sysdeps:
	@if ! command -v dpkg-query >/dev/null; then \
	    if command -v xelatex >/dev/null && kpsewhich xeCJK.sty >/dev/null && command -v pdftotext >/dev/null; then \
	        echo "sysdeps: xelatex, xeCJK and pdftotext present"; exit 0; fi; \
	    echo "sysdeps: not a Debian system; install xelatex with xeCJK, a Noto CJK font and poppler (pdftotext, pdftoppm) with your package manager" >&2; exit 1; fi; \
	$(APT_INSTALL) sysdeps $(SYSDEPS)

# Headless Chromium for the JupyterLab browser test (tests/pipeline/test_lab.py; it skips
# without it). Not needed for the PDF. Installs only when missing; a no-op when present.
browserdeps:
	@if command -v chromium >/dev/null || command -v chromium-browser >/dev/null; then \
	    echo "browserdeps: chromium present"; exit 0; fi; \
	if ! command -v apt-get >/dev/null; then \
	    echo "browserdeps: not a Debian system; install Chromium with your package manager" >&2; exit 1; fi; \
	$(APT_INSTALL) browserdeps chromium

# JupyterLab rooted at notebooks/: notebooks/jupytext.toml pairs each .py with its .ipynb, and
# the project's settings folder (.jupyter/lab/settings/overrides.json) makes a double-click open
# a .py as a notebook. Nothing is written to ~/.jupyter; your own settings still apply on top.
# LAB_ARGS passes options on: make lab LAB_ARGS="--no-browser --port 8889" (--allow-root as root)
LAB_ARGS ?=
lab: $(STAMP)
	$(BIN)/jupyter lab --LabApp.app_settings_dir=.jupyter/lab/settings $(LAB_ARGS) notebooks/

# training images/s on this machine: common recipe vs fast paths (BENCH_ARGS="--steps 50 --out bench.json")
BENCH_ARGS ?=
bench: $(STAMP)
	$(BIN)/resnet-nb bench $(BENCH_ARGS)

# Debian packages of a single-node SLURM for the cluster tests (tests/pipeline/test_slurm.py
# starts munged, slurmctld and slurmd itself, as root; they skip without them): slurm-wlm and
# munge. Not needed for anything else. Installs only what is missing; a no-op when present.
.PHONY: slurmdeps
SLURMDEPS := slurm-wlm munge
slurmdeps:
	@if ! command -v dpkg-query >/dev/null; then \
	    if command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v munged >/dev/null; then \
	        echo "slurmdeps: slurmctld, slurmd and munged present"; exit 0; fi; \
	    echo "slurmdeps: not a Debian system; install SLURM (slurmctld, slurmd, clients) and munge with your package manager" >&2; exit 1; fi; \
	$(APT_INSTALL) slurmdeps $(SLURMDEPS)

clean:
	rm -rf $(VENV) .pytest_cache
