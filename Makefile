# make demo  - set up .venv, run the lab (six optimizers x eight problems, tuned) and write lab-report/report.html
# make lesson - print the lesson's worked examples, computed step by step by adaopt trace
# make test  - set up .venv with the test extras (torch, hypothesis, scikit-learn) and run pytest
# make bench - the optimizer-step benchmark: adaopt vs torch.optim, side by side, with the stream roofline
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: demo lesson test bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.cli: $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[cli,lowp,fast,lab]'
	touch $@

$(VENV)/.test: $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test]'
	touch $@ $(VENV)/.cli

demo: $(VENV)/.cli
	$(BIN)/adaopt lab --out lab-report

lesson: $(VENV)/.cli
	PATH="$(CURDIR)/$(BIN):$$PATH" bash scripts/demo.sh

test: $(VENV)/.test
	$(BIN)/python -m pytest -q

bench: $(VENV)/.test
	$(BIN)/python benchmarks/bench_step.py
	$(BIN)/python benchmarks/bench_diagnostics.py

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache .hypothesis lab-report
