# One command trains, one tests. Every target creates the environment when it is missing.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
ARGS   ?=

.PHONY: help install train eval predict explain history test test-fast test-slurm lint format validate dataset export serve tensorboard clean bench

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install -e '.[dev]'
	touch $@

install: $(VENV)/.installed  ## create .venv and install the project with its dev tools

train: install  ## python train.py $(ARGS): the default circuit-board experiment
	$(PY) train.py $(ARGS)

test: install  ## the whole test suite (slow tests included); no test collected is a failure
	$(PY) -m pytest $(ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test: pytest collected no tests" >&2; exit 1; fi; exit $$rc

test-fast: install  ## the suite without tests marked slow
	$(PY) -m pytest -m "not slow" $(ARGS)

test-slurm: install  ## a real one-node SLURM cluster (root): DDP job via Hydra, requeued once, resumed
	scripts/slurm/ci_cluster.sh

lint: install  ## ruff check and format check
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: install  ## ruff fix and format
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

validate: install  ## python scripts/validate_data.py $(ARGS): check a dataset (ARGS="data.root=... [against=RUN]")
	$(PY) scripts/validate_data.py $(ARGS)

dataset: install  ## python scripts/make_pcb_dataset.py $(ARGS): the circuit boards ahead of training (ARGS="data.generator.num_train=...")
	$(PY) scripts/make_pcb_dataset.py $(ARGS)

export: install  ## python scripts/export.py ckpt_path=$(CKPT) $(ARGS): a deployment bundle
	@test -n "$(CKPT)" || { echo "make export: give CKPT=path/to/checkpoint.ckpt" >&2; exit 2; }
	$(PY) scripts/export.py ckpt_path=$(CKPT) $(ARGS)

serve: install  ## python -m trainer.serve $(BUNDLE) $(ARGS): serve a bundle on 127.0.0.1:8000
	@test -n "$(BUNDLE)" || { echo "make serve: give BUNDLE=path/to/bundle" >&2; exit 2; }
	$(PY) -m trainer.serve $(BUNDLE) $(ARGS)

eval: install  ## python eval.py $(ARGS): evaluate a checkpoint (ARGS="ckpt_path=... 'gate.min={test/f1:0.95}'")
	$(PY) eval.py $(ARGS)

predict: install  ## python predict.py $(ARGS): score unlabelled images (ARGS="ckpt_path=... images=DIR|FILE|GLOB [overlay=true]")
	$(PY) predict.py $(ARGS)

explain: install  ## python scripts/explain.py ckpt_path=$(CKPT) $(ARGS): feature maps, Grad-CAM, worst mistakes
	@test -n "$(CKPT)" || { echo "make explain: give CKPT=path/to/checkpoint.ckpt" >&2; exit 2; }
	$(PY) scripts/explain.py ckpt_path=$(CKPT) $(ARGS)

history: install  ## python scripts/history.py $(ARGS): the run history (ARGS="command=list|compare|plot|regressions ...")
	$(PY) scripts/history.py $(ARGS)

bench: install  ## python scripts/bench/benchmark.py $(ARGS): ours vs a raw PyTorch loop, input pipeline, time to accuracy
	$(PY) scripts/bench/benchmark.py $(ARGS)

tensorboard: install  ## TensorBoard over every run in outputs/ (http://127.0.0.1:6006)
	$(VENV)/bin/tensorboard --logdir outputs --host 127.0.0.1 --port 6006

clean:  ## remove caches and run outputs (not data/, not .venv)
	rm -rf outputs multirun .pytest_cache .ruff_cache
	find . -name __pycache__ -type d -prune -not -path './$(VENV)/*' -exec rm -rf {} +
