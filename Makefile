# Two commands do all the set-up on a fresh machine:
#   make demo   train on the built-in offline dataset (digits), then diagnose the run
#   make test   the test suite
# Both create the virtual environment at .venv when it is missing and reuse it otherwise.

VENV    ?= .venv
PYTHON  ?= python3
BIN     := $(VENV)/bin
# The torch/torchvision pair the project is tested with (CPU and CUDA).
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1

.PHONY: demo test samples bench clean-venv

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q $(TORCH_SPEC)
	$(BIN)/python -m pip install -q -e ".[test]"
	touch $@

demo: $(VENV)/.installed
	$(BIN)/paramdoctor train
	$(BIN)/paramdoctor diagnose latest; test $$? -le 1

test: $(VENV)/.installed
	$(BIN)/python -m pytest -q -n 2

samples: $(VENV)/.installed
	$(BIN)/python sample_runs/make_samples.py

bench: $(VENV)/.installed
	$(BIN)/python benchmarks/overhead.py
	$(BIN)/python benchmarks/data_path.py
	$(BIN)/python benchmarks/startup.py

clean-venv:
	rm -rf $(VENV)
