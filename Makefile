# resnet-nb: every target sets up .venv on first use (idempotent: a stamp file records
# the install, so a second call installs nothing unless pyproject.toml changed).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

# reproduction knobs: make reproduce PRESET=smoke DATASET=synthetic RUN_ID=my-run
PRESET  ?= seed
DATASET ?= cifar10
RUN_ID  ?=
PYTEST_ARGS ?=

.PHONY: help install test reproduce lab report golden bench clean

help:
	@echo "make reproduce   run the reproduction (PRESET=$(PRESET) DATASET=$(DATASET))"
	@echo "make test        set up .venv and run the test suite"
	@echo "make lab         open the notebooks in JupyterLab"
	@echo "make report      build the pandoc report of RUN_ID"

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --disable-pip-version-check -q -e '.[dev,lab]'
	@touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

reproduce: $(STAMP)
	$(BIN)/resnet-nb reproduce --preset $(PRESET) --dataset $(DATASET) $(if $(RUN_ID),--run-id $(RUN_ID))

report: $(STAMP)
	$(BIN)/resnet-nb report $(if $(RUN_ID),--run-id $(RUN_ID))

lab: $(STAMP)
	$(BIN)/jupyter lab notebooks/

clean:
	rm -rf $(VENV) .pytest_cache
