# paintbridge — `make run` serves the embedded model, `make test` runs every test.
# Both work from a fresh clone on Debian/Ubuntu with only python3 and make.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.installed
# CPU build of torch pinned for this project's machines; GPU users may install their own.
TORCH := torch==2.13.0
export HF_HUB_OFFLINE := 1
export OMP_WAIT_POLICY := PASSIVE
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: run test check quick types demo bench lint train-default eval-default train-lora-sample \
	train-control-sample clean install

$(PY):
	@$(PYTHON) -m venv $(VENV) 2>/dev/null || { \
	  rm -rf $(VENV); \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing python3-venv (Debian/Ubuntu)"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null && \
	    $(PYTHON) -m venv $(VENV); \
	  else \
	    echo "error: '$(PYTHON) -m venv' failed. On Debian/Ubuntu run: sudo apt-get install python3-venv"; exit 1; \
	  fi; }

$(STAMP): $(PY) pyproject.toml constraints.txt
	$(PIP) install -q --upgrade pip
	$(PIP) install -q $(TORCH)
	$(PIP) install -q -c constraints.txt -e '.[test]'
	@# spandrel (upscaler models) without its torchvision: only two architectures we never
	@# load use it, and the pinned CPU torch has no matching torchvision build
	$(PIP) install -q -c constraints.txt --no-deps spandrel einops
	@touch $@

# Ray Serve for the cluster tests only: `make run` does not need its 500 MB
$(VENV)/.cluster-stamp: $(STAMP)
	$(PIP) install -q -c constraints.txt -e '.[cluster]'
	@touch $@

install: $(STAMP)

run: $(STAMP)
	$(VENV)/bin/paintbridge serve

# Everything, hosts included: what CI runs.
test: $(STAMP) $(VENV)/.cluster-stamp
	$(VENV)/bin/ruff check .
	sh scripts/typecheck.sh $(VENV)/bin/mypy
	sh scripts/ensure_krita.sh
	sh scripts/ensure_gimp_chroot.sh
	$(PY) -m pytest -q

# The edit loop, under a minute: lint, types and the tests marked fast (no daemon, no host).
check: $(STAMP)
	$(VENV)/bin/ruff check .
	sh scripts/typecheck.sh $(VENV)/bin/mypy
	$(PY) -m pytest -q -m fast

# Everything but the hosts and the cluster (the daemon tier too): the loop before a push.
quick: $(STAMP)
	$(VENV)/bin/ruff check .
	sh scripts/typecheck.sh $(VENV)/bin/mypy
	$(PY) -m pytest -q -m "not host and not cluster"

types: $(STAMP)
	sh scripts/typecheck.sh $(VENV)/bin/mypy

demo: $(STAMP)
	$(PY) scripts/demo.py

bench: $(STAMP) $(VENV)/.cluster-stamp
	$(PY) bench/run_all.py

# Retrain the embedded default model from scratch (seeded; about 45-55 min on 2 CPU cores).
train-default: $(STAMP)
	nice -n 5 $(PY) -m tools.training train --out backend/default_model

# Score the embedded model (colour, shape, img2img layout) and rewrite docs/default-model.md.
eval-default: $(STAMP)
	$(PY) -m tools.training eval --doc docs/default-model.md \
	    --grid docs/default-model-grid.png --json tools/training/eval_results.json

# Retrain the sample LoRA for the embedded model (samples/loras/gray*.safetensors, seeded,
# about 10 min on 2 CPU cores) and score it (samples/loras/gray.json).
train-lora-sample: $(STAMP)
	nice -n 5 $(PY) -m tools.training lora

# Retrain the embedded model's scribble ControlNet (backend/default_controlnets/shapes-scribble,
# seeded, about 30 min on 2 CPU cores) and score it (tools/training/control_eval.json).
train-control-sample: $(STAMP)
	nice -n 5 $(PY) -m tools.training control

lint: $(STAMP)
	$(VENV)/bin/ruff check .

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache .typecheck bench/results demo-out*.png
