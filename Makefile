# casekit: the two commands a newcomer needs are `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# llama-cpp-python compiles from source. The multimodal part is not needed and costs minutes;
# a portable AVX2 build (not -march=native) runs on any recent x86-64 CPU and avoids AMX code
# that some VMs advertise but cannot execute (a segfault in ggml_backend_amx_mul_mat).
export CMAKE_ARGS ?= -DLLAVA_BUILD=OFF -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON

.PHONY: demo test venv lint bench soak clean

$(BIN)/casekit: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,models]'
	touch $(BIN)/casekit

venv: $(BIN)/casekit

demo: venv
	$(BIN)/casekit demo cases/demo/case.yaml

# Lint first: ruff and mypy must pass for the tests to pass (CI runs exactly `make test`).
test: venv lint
	$(BIN)/python -m pytest -q -n 2 --dist loadfile tests

lint: venv
	$(BIN)/ruff check casekit tests benchmarks
	$(BIN)/mypy

bench: venv
	$(BIN)/python benchmarks/run_all.py

soak: venv
	$(BIN)/python benchmarks/kill_soak.py

clean:
	rm -rf $(VENV) build dist *.egg-info
