# casekit: the two commands a newcomer needs are `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# llama-cpp-python compiles from source; the multimodal part is not needed and costs minutes.
export CMAKE_ARGS ?= -DLLAVA_BUILD=OFF

.PHONY: demo test venv lint bench clean

$(BIN)/casekit: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,models]'
	touch $(BIN)/casekit

venv: $(BIN)/casekit

demo: venv
	$(BIN)/casekit demo cases/demo/case.yaml

test: venv
	$(BIN)/python -m pytest -q tests

lint: venv
	$(BIN)/ruff check casekit tests benchmarks
	$(BIN)/mypy

bench: venv
	$(BIN)/python benchmarks/run_all.py

clean:
	rm -rf $(VENV) build dist *.egg-info
