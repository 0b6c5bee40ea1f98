# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
TEST_STAMP := $(VENV)/.installed-test

.PHONY: demo test lint clean venv catalog

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e .
	touch $@

$(TEST_STAMP): $(STAMP) scripts/setup-test-env.sh
	bash scripts/setup-test-env.sh $(VENV)
	touch $@

venv: $(STAMP)

demo: $(STAMP)
	rm -rf demo
	$(BIN)/python scripts/make_demo.py demo
	$(BIN)/sdmodel convert demo/sd15-demo.safetensors --format ckpt -o demo/sd15-demo.ckpt
	$(BIN)/sdmodel info demo/
	$(BIN)/sdmodel hash demo/sd15-demo.safetensors demo/sd15-demo.ckpt
	$(BIN)/sdmodel scan demo/
	$(BIN)/sdmodel convert demo/sd15-demo.ckpt --dtype fp16 --ema drop --prune --fix-clip --verify
	$(BIN)/sdmodel info demo/sd15-demo-fp16-noema-pruned-clipfix.safetensors
	LANG=ru_RU.UTF-8 $(BIN)/sdmodel info demo/sd15-demo-fp16-noema-pruned-clipfix.safetensors
	$(BIN)/sdmodel --lang ru explain demo/sd15-demo-fp16-noema-pruned-clipfix.safetensors

lint: $(TEST_STAMP)
	$(BIN)/ruff check src tests bench scripts
	$(BIN)/ruff format --check src tests bench scripts

test: $(TEST_STAMP)
	$(BIN)/ruff check src tests bench scripts
	$(BIN)/ruff format --check src tests bench scripts
	$(BIN)/mypy
	$(BIN)/python -m pytest -p no:cacheprovider -n 2 --durations=15

# Messages for translators: extract from the sources, merge into each language's .po, compile.
LOCALE := src/sdmodel/locale
catalog: $(TEST_STAMP)
	$(BIN)/pybabel extract --no-location --omit-header --sort-output --no-wrap -k N_ -k Msg -k msg_n:1,2 -o $(LOCALE)/sdmodel.pot src/sdmodel
	$(BIN)/pybabel update -i $(LOCALE)/sdmodel.pot -d $(LOCALE) -D sdmodel --no-wrap --no-fuzzy-matching --ignore-obsolete
	$(BIN)/pybabel compile -d $(LOCALE) -D sdmodel --statistics

clean:
	rm -rf $(VENV) demo bench/_work
