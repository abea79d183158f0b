# make demo  - set up .venv, run the lab (six optimizers x eight problems, tuned) and write lab-report/report.html
# make lesson - print the lesson's worked examples, computed step by step by adaopt trace
# make test-setup - apt-get install Debian's chromium and chromium-driver (root), which the explorer's browser
#              tests drive through Selenium; without them those tests skip (.ci/run runs it first)
# make test  - set up .venv with the test extras (torch, hypothesis, scikit-learn) and run pytest on every core (it prints the 15 slowest tests)
# make test-portable - the numeric tests (verdicts, parity with torch and the references, kernels, lesson) as other CPUs
#              would run them: under each OpenBLAS core type, numba's generic CPU, one thread, torch without AVX-512
# make bench - the benchmarks, each against its reference in the same run, idle and beside a busy process: the optimizer
#              step (and its 16-bit options) vs torch.optim with the stream roofline, whole training steps, gradient release,
#              the monitor's cost, the diagnosis corpus (accuracy, false alarms, delays), the explorer's slider move
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# pip byte-compiles what it installs one file at a time (43 s for the test extras here); compileall on every
# core does the same in 28 s. The .pyc files matter: with PYTHONDONTWRITEBYTECODE set, as on this machine,
# an interpreter would otherwise compile torch on every import (12.6 s instead of 6 s). Like pip, it passes over
# the few files written for a newer Python (torch's py312_intrinsics.py), hence the || true.
SITE    = $$($(BIN)/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
PYC     = $(BIN)/python -m compileall -q -j 0 "$(SITE)" > /dev/null 2>&1 || true

.PHONY: demo lesson test test-setup test-portable bench bench-peers clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.cli: $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-compile -e '.[cli,lowp,fast,lab]'
	$(PYC)
	touch $@

$(VENV)/.test: $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-compile -e '.[test]'
	$(PYC)
	touch $@ $(VENV)/.cli

demo: $(VENV)/.cli
	$(BIN)/adaopt lab --out lab-report

lesson: $(VENV)/.cli
	PATH="$(CURDIR)/$(BIN):$$PATH" bash scripts/demo.sh

test: $(VENV)/.test
	$(BIN)/python -m pytest -q -n auto --dist loadfile --durations=15

test-setup:
	@if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then echo "chromium and chromedriver: present"; \
	else apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver; fi

# test-portable: the tests whose numbers (or verdicts) a CPU, a BLAS kernel or a thread count could move, each
# under the settings that move them. An OpenBLAS core type changes NumPy's matrix products only: the lab problems
# with data (breast cancer, digits) under the verdict scenarios, the corpus's fast subset, and the batched-equals-
# single checks. numba's generic CPU (no AVX, no FMA) and one thread change adaopt's kernels: the kernels against
# the reference, the oracles, the lesson, parity with torch.optim (float32, where rounding shows), every verdict scenario, the
# minibatch corpus's fast subset, and the 16/8-bit kernels (Kahan, stochastic rounding, 16-bit and 8-bit state) against theirs.
# ATen/MKL without AVX-512 changes torch's side of the parity tests. Each numba CPU name gets its own kernel
# cache. Under the generic CPU float16 is converted on its bits (kernels/lowp.py: no F16C there).
PORTABLE_BLAS  ?= Haswell SkylakeX Zen Sandybridge
PORTABLE_NUMPY := tests/test_diagnostics.py::test_scenario tests/test_diagnose_corpus.py tests/test_problems.py::test_batched_equals_row_by_row 	tests/test_lab.py::test_a_batched_sweep_equals_the_same_runs_one_by_one
PORTABLE_TORCH := tests/test_torch_parity.py tests/test_torch_tensor_path.py 	tests/test_torch_frontend.py::test_parity_with_torch_optim tests/test_torch_frontend.py::test_onecycle_schedule_matches_torch 	tests/test_torch_frontend.py::test_two_param_groups_match_torch
PORTABLE_ALL   := tests/test_diagnostics.py::test_scenario tests/test_diagnose_corpus.py tests/test_kernels.py \
	tests/test_kernels_lowp.py tests/test_kernels_int8.py tests/test_oracle.py tests/test_lesson.py $(PORTABLE_TORCH)
PORTABLE_CACHE := $(CURDIR)/$(VENV)/portable-cache
PORTABLE_RUN    = ADAOPT_CACHE_DIR=$(PORTABLE_CACHE)/$(1) NUMBA_CACHE_DIR=$(PORTABLE_CACHE)/$(1)/numba \
	$(BIN)/python -m pytest -q -p no:cacheprovider

test-portable: $(VENV)/.test
	@set -e; for core in $(PORTABLE_BLAS); do \
	  echo "== OPENBLAS_CORETYPE=$$core (NumPy's OpenBLAS runs: $$(OPENBLAS_CORETYPE=$$core $(BIN)/python -c \
	    "import numpy, threadpoolctl; print(*{d.get('architecture') for d in threadpoolctl.threadpool_info() if d['internal_api'] == 'openblas'})"))"; \
	  OPENBLAS_CORETYPE=$$core $(call PORTABLE_RUN,host) $(PORTABLE_NUMPY) -k "not scenario or breast or digits"; \
	done
	@echo "== NUMBA_CPU_NAME=generic"
	@NUMBA_CPU_NAME=generic $(call PORTABLE_RUN,generic) $(PORTABLE_ALL) -k "not (float64 and torch)"
	@echo "== one thread (OMP, numba, OpenBLAS, MKL)"
	@OMP_NUM_THREADS=1 NUMBA_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1 $(call PORTABLE_RUN,host) \
	  $(PORTABLE_ALL) -k "not (float64 and torch)"
	@echo "== torch without AVX-512 (ATEN_CPU_CAPABILITY=avx2, MKL_ENABLE_INSTRUCTIONS=AVX2)"
	@ATEN_CPU_CAPABILITY=avx2 MKL_ENABLE_INSTRUCTIONS=AVX2 $(call PORTABLE_RUN,host) $(PORTABLE_TORCH) -k "float32"

bench: $(VENV)/.test
	$(BIN)/python benchmarks/bench_step.py
	$(BIN)/python benchmarks/bench_step.py --hog 1 --optimizers AdamW --sizes 1e4,1e5,1e6,1e7
	$(BIN)/python benchmarks/bench_lowp.py
	$(BIN)/python benchmarks/bench_lowp.py --hog 1
	$(BIN)/python benchmarks/bench_train.py
	$(BIN)/python benchmarks/bench_train.py --hog 1
	$(BIN)/python benchmarks/bench_backward.py
	$(BIN)/python benchmarks/bench_backward.py --hog 1
	$(BIN)/python benchmarks/bench_diagnostics.py
	$(BIN)/python benchmarks/bench_explore.py
	$(BIN)/python benchmarks/bench_diagnose.py --jobs 2

# Other libraries' 8-bit AdamW beside adaopt's int8 state (never in CI). Installed without their
# dependencies (they would pull another torch) into a folder of their own, used by this run only.
PEERS_DIR := $(VENV)/peers
bench-peers: $(VENV)/.test
	test -d $(PEERS_DIR) || $(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps \
	  --target $(PEERS_DIR) bitsandbytes==0.50.2 torchao==0.18.0
	PYTHONPATH=$(PEERS_DIR) $(BIN)/python benchmarks/bench_lowp.py --peers --sizes 1e6,1e7

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache .hypothesis lab-report
